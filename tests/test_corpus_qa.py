"""WikiSpoken-QA: deterministic questions whose gold answers are spoken in one passage."""

from __future__ import annotations

import json

import pytest

from speechrag.corpus.qa import (
    BLANK,
    QA_FILE,
    build_questions,
    contains,
    normalize,
    questions_for,
    write_questions,
)
from speechrag.corpus.wikispoken import passages


def test_normalize_and_contains_compare_on_words() -> None:
    assert normalize("Gaspard  Monge!") == "gaspard monge"
    assert normalize("1,000 km and 3.5 m.") == "1000 km and 3.5 m"
    assert normalize("Pélé's") == "pele"
    assert contains("It orbits the Earth [1]", "Earth's")
    assert contains("It was completed in 1889 [2].", "1889")
    assert contains("The answer: Gaspard Monge", "gaspard monge")
    assert not contains("In 18890 maybe", "1889")  # whole words only
    assert not contains("anything", "")


def test_a_passage_gives_a_title_question_and_blanked_sentences() -> None:
    p = {"passage_id": "x", "title": "Eiffel Tower (Paris)",
         "description": "wrought-iron lattice tower in Paris, unique to this test",
         "text": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in "
                 "Paris, France. It was designed by the company of Gustave Eiffel and built "
                 "from 1887 to 1889. Locally nicknamed the Iron Lady, it was the entrance to "
                 "the World's Fair."}
    qs = questions_for(p)
    title = qs[0]
    assert title["kind"] == "title" and title["gold"] == "Eiffel Tower"  # spoken form
    assert "wrought-iron lattice tower" in title["text"]
    blanks = [q for q in qs if q["kind"] == "blank"]
    assert blanks and len({q["id"] for q in qs}) == len(qs)
    for q in blanks:
        sentence = q["text"].split('"')[1]
        assert sentence.count(BLANK) == 1
        assert sentence.replace(BLANK, q["gold"]) in p["text"]  # the gold is what was said
        assert not set(normalize(q["gold"]).split()) & {"eiffel", "tower"} or \
            q["gold"][0].isdigit()
        assert "blank" in q["spoken"] and BLANK not in q["spoken"]
    # one blank per sentence first; in a sentence, numbers before names ("Gustave Eiffel")
    assert [q["gold"] for q in blanks[:3]] == ["Champ de Mars", "1887", "Iron Lady"]
    assert questions_for(p) == qs  # deterministic


def test_a_title_not_spoken_or_a_shared_description_gives_no_title_question() -> None:
    p = {"passage_id": "y", "title": "Zyzzyva", "description": "genus of weevils, test only",
         "text": "It is a genus of weevils found in South America and described in 1922."}
    assert all(q["kind"] == "blank" for q in questions_for(p))


def test_train_corpora_are_refused(tmp_path) -> None:
    from speechrag.corpus.build import Corpus

    corpus = Corpus(tmp_path, {"split": "train"})
    with pytest.raises(ValueError, match="test or dev passages only"):
        build_questions(corpus)


def test_questions_of_a_built_test_corpus_are_spoken_in_evaluation_voices(tiny_corpus) -> None:
    rows = write_questions(tiny_corpus.root, workers=2)
    assert rows and rows == [json.loads(x) for x in
                             (tiny_corpus.root / QA_FILE).read_text().splitlines()]
    test_ids = {p.passage_id for p in passages("test")}
    for q in rows:
        assert q["passage_id"] in test_ids
        assert q["voice"].split(":")[0] in ("flite", "festival")
        assert (tiny_corpus.root / q["audio"]).stat().st_size > 1000
    spoken = {m["passage_id"]: m["text"] for m in tiny_corpus.manifest}
    for q in rows:
        assert contains(spoken[q["passage_id"]], q["gold"])
