"""The hits' text made short for the LLM: overlapping windows merged, passages cut to
the sentences most like the question (the real MiniLM encoder through ONNX Runtime)."""

from __future__ import annotations

import pytest

from speechrag.context import (
    GAP,
    MAX_WORDS,
    focus,
    merge_overlapping,
    sentence_encoder,
    sentences_of,
    splice,
)
from speechrag.index import Hit


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def embed():
    return sentence_encoder()


def test_splice_says_the_shared_words_once() -> None:
    assert splice("one two three four five six", "four five six seven eight") == \
        "one two three four five six seven eight"
    # two transcripts of the same audio differ at their cut edges
    assert splice("the cat sat on the mat by the door", "Mat, by the door it slept soundly") \
        == "the cat sat on the Mat, by the door it slept soundly"
    assert splice("alpha beta gamma", "delta epsilon zeta") == \
        "alpha beta gamma delta epsilon zeta"  # nothing shared: both, in order
    assert splice("", "just b") == "just b"


def test_merge_joins_overlapping_windows_of_one_recording_in_the_best_ones_place() -> None:
    hits = [Hit("a.wav", 20.0, 60.0, 0.9, None, "a20"),
            Hit("b.wav", 80.0, 120.0, 0.8, None, "b80"),
            Hit("a.wav", 0.0, 40.0, 0.7, None, "a0"),
            Hit("doc", None, None, 0.6, None, "doc"),
            Hit("a.wav", 40.0, 80.0, 0.5, None, "a40"),
            Hit("b.wav", 120.0, 160.0, 0.4, None, "b120")]  # touches b80, shares nothing
    texts = ["c d e f g h", "x", "a b c d e", "document", "f g h i j", "y"]
    merged, merged_texts = merge_overlapping(hits, texts)
    assert [(h.source, h.start, h.end) for h in merged] == [
        ("a.wav", 0.0, 80.0), ("b.wav", 80.0, 120.0), ("doc", None, None),
        ("b.wav", 120.0, 160.0)]
    assert merged[0].score == 0.9 and merged[0].id == "a20"
    assert merged_texts == ["a b c d e f g h i j", "x", "document", "y"]
    assert merged[0].text == "a b c d e f g h i j"


def test_merge_chains_that_meet_late_still_become_one() -> None:
    hits = [Hit("a.wav", 0.0, 40.0, 0.9, None), Hit("a.wav", 40.0, 80.0, 0.8, None),
            Hit("a.wav", 20.0, 60.0, 0.7, None)]  # bridges the first two
    merged, _ = merge_overlapping(hits, ["a b", "e f", "c d"])
    assert [(h.start, h.end) for h in merged] == [(0.0, 80.0)]


def test_sentences_split_on_punctuation_and_long_unpunctuated_text_is_cut() -> None:
    assert sentences_of("It rains. Does it?  Yes!  ok") == ["It rains.", "Does it?", "Yes!", "ok"]
    pieces = sentences_of(" ".join(f"w{i}" for i in range(100)))
    assert len(pieces) == 3 and all(words(p) <= MAX_WORDS for p in pieces)
    assert " ".join(pieces) == " ".join(f"w{i}" for i in range(100))


def test_focus_keeps_whole_passages_that_fit(embed) -> None:
    texts = ["Lava flows downhill.  It cools.", "Bread rises."]
    assert focus("what flows?", texts, 100, words, embed) == \
        ["Lava flows downhill. It cools.", "Bread rises."]


def test_focus_cuts_to_the_sentences_that_answer_and_keeps_every_passage(embed) -> None:
    filler = " ".join(f"The weather on day {i} was mild and the market was quiet."
                      for i in range(8))
    texts = [filler + " The violin has four strings tuned in fifths. " + filler,
             "Bread is baked from flour, water and yeast. " + filler]
    out = focus("How many strings does a violin have?", texts, 40, words, embed)
    assert "The violin has four strings tuned in fifths." in out[0]
    assert out[0].startswith(GAP) and out[0].endswith(GAP)
    assert all(o.strip() and o != GAP for o in out)  # no passage emptied
    assert sum(words(o.replace(GAP, "")) for o in out) <= 40
    assert len(out[0]) < len(texts[0]) / 3
