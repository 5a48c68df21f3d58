"""Answers from an index: a real small index (real TTS audio, Whisper tiny.en, LanceDB)
and real local LLMs from the packages: the default, Qwen2.5-Coder 1.5B, where an answer
must be right, and SmolLM2-135M where only the machinery is under test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import speechrag
from speechrag.audio import load_query_audio
from speechrag.index import Hit, Index
from speechrag.llm import LLMConfig, load_llm
from speechrag.rag import (
    NO_ANSWER,
    SYSTEM,
    Asker,
    Retrieved,
    build_prompt,
    check_question,
    cited,
    messages_for,
    says_no_answer,
)
from speechrag.segment import SegmenterConfig
from tests.conftest import TOPICS, speak

SMALL = "smollm2-135m"


@pytest.fixture(scope="module")
def rag_index(tmp_path_factory, speech_dir: Path) -> Path:
    ix = tmp_path_factory.mktemp("rag") / "ix"
    report = speechrag.index_audio([speech_dir], ix, model="cascade-tiny",
                                   segmenter=SegmenterConfig.of(10, 5))
    assert not report.failed
    return ix


@pytest.fixture(scope="module")
def small_llm():
    return load_llm(LLMConfig(model=SMALL))


def hit(source: str, text: str, start: float | None = 0.0, n: int = 0) -> Hit:
    return Hit(source, start, None if start is None else start + 10.0, 0.9 - n / 10, text,
               f"id{n}")


# -- citations and refusals ---------------------------------------------------------------------


def test_cited_reads_every_form_once_in_order_and_ignores_unknown_numbers() -> None:
    assert cited("Paris [2].", 5) == [2]
    assert cited("Lava [3][1], and ash [1, 2]; see [ 4 ]", 5) == [3, 1, 2, 4]
    assert cited("It was in 1889 [7] [0] [2;3]", 3) == [2, 3]
    assert cited("no citation at all", 3) == []


def test_says_no_answer_in_its_wordings() -> None:
    assert says_no_answer(NO_ANSWER)
    assert says_no_answer("The recordings don't say.")
    assert says_no_answer("the passages does not say who")
    assert not says_no_answer("She said no to the offer.")


def test_questions_empty_or_too_long_are_refused() -> None:
    assert check_question("  who   built it? ") == "who built it?"
    with pytest.raises(ValueError, match="empty"):
        check_question("  \n ")
    with pytest.raises(ValueError, match="characters long"):
        check_question("why " * 400)


# -- the prompt ---------------------------------------------------------------------------------


def test_prompt_numbers_the_hits_with_source_and_span(small_llm) -> None:
    hits = [hit("/a/talk.wav", "lava flows", 65.0, 0), hit("doc-7", "bread text", None, 1)]
    prompt = build_prompt("what flows?", hits, [h.text or "" for h in hits], small_llm, 64)
    assert prompt.dropped == 0 and prompt.hits == hits
    system, user = prompt.messages
    assert system["content"] == SYSTEM and NO_ANSWER in system["content"]
    body = user["content"]
    assert "[1] (talk.wav, 01:05-01:15)\nlava flows" in body  # file name and mm:ss, no path
    assert "[2] (doc-7)\nbread text" in body
    assert body.index("[1]") < body.index("[2]") < body.index("Question: what flows?")
    assert prompt.tokens == small_llm.count_tokens(prompt.messages)


def test_prompt_the_model_template_is_the_ggufs_own(small_llm) -> None:
    text = small_llm.prompt(messages_for("q?", [hit("a.wav", "t")], ["t"]))
    assert text.startswith("<|im_start|>system\n" + SYSTEM)  # SmolLM2's ChatML
    assert text.rstrip().endswith("<|im_start|>assistant")


def test_prompt_drops_what_does_not_fit_and_keeps_later_hits_that_do() -> None:
    llm = load_llm(LLMConfig(model=SMALL, n_ctx=400))
    long_text = "lava " * 600
    hits = [hit("a.wav", "short one", 0, 0), hit("b.wav", long_text, 10, 1),
            hit("c.wav", "short two", 20, 2)]
    prompt = build_prompt("what?", hits, [h.text or "" for h in hits], llm, 64)
    assert prompt.dropped == 1
    assert [h.source for h in prompt.hits] == ["a.wav", "c.wav"]  # renumbered 1, 2
    assert "[2] (c.wav" in prompt.messages[1]["content"]
    assert prompt.tokens <= 400 - 64
    with pytest.raises(ValueError, match="too long for the LLM's context"):
        build_prompt("why " * 600, hits, [h.text or "" for h in hits], llm, 64)


# -- answering ----------------------------------------------------------------------------------


def test_ask_answers_from_the_right_moment_and_cites_it(rag_index: Path) -> None:
    answer = speechrag.ask(rag_index, "Which instrument has four strings?", k=3)  # default LLM
    assert "violin" in answer.text.lower()
    assert answer.citations, answer.text
    first = answer.citations[0]
    assert Path(first.source).stem == "violin"
    assert first.start is not None and first.end is not None and first.start < first.end
    assert (first.source, first.start) in {(h.source, h.start) for h in answer.hits}
    assert answer.hits == sorted(answer.hits, key=lambda h: -h.score) and len(answer.hits) == 3
    t = answer.timings
    assert 0 < t["retrieve_ms"] < t["first_token_ms"] <= t["total_ms"]


def test_ask_stream_yields_the_answer_piece_by_piece(rag_index: Path) -> None:
    stream = speechrag.ask_stream(rag_index, "What is bread made from?", k=2, llm=SMALL)
    assert stream.prompt.hits and stream.answer is None  # retrieval done, nothing written
    pieces = list(stream)
    assert len(pieces) > 1
    assert stream.answer is not None and stream.answer.text == "".join(pieces).strip()


def test_spoken_question_is_answered_from_what_was_heard(rag_index: Path, tmp_path: Path,
                                                         small_llm) -> None:
    audio = speak("Which instrument has four strings?", tmp_path / "q.wav", "flite:slt")
    answer = speechrag.ask(rag_index, audio=audio, k=2, llm=small_llm)
    assert answer.heard and "strings" in answer.heard.lower()
    assert answer.query == answer.heard
    assert Path(answer.hits[0].source).stem == "violin"


def test_an_end_to_end_index_hears_a_spoken_question_with_whisper(tmp_path: Path,
                                                                  speech_dir: Path,
                                                                  small_llm) -> None:
    ix = tmp_path / "clsr"
    speechrag.index_audio([speech_dir / "violin.wav"], ix, model="clsr")
    audio = speak("How many strings does a violin have?", tmp_path / "q.wav", "flite:slt")
    asker = Asker(ix, small_llm)
    got = asker.retrieve(audio=load_query_audio(audio), k=1)
    assert "violin" in (got.heard or "").lower()
    assert got.timings["transcribe_ms"] > 0 and got.hits


def test_context_asr_transcribes_once_keeps_it_and_never_touches_the_segments(
        tmp_path: Path, speech_dir: Path, small_llm) -> None:
    ix = tmp_path / "clsr"
    speechrag.index_audio([speech_dir / "volcano.wav", speech_dir / "bread.wav"], ix,
                          model="clsr")
    before = Index.open(ix).rows(("id", "source", "start", "end", "text"))
    asker = Asker(ix, small_llm, context="asr")
    got = asker.retrieve("Where does lava come from?", k=1)
    texts, ms = asker.context_texts(got.hits)
    assert ms > 0 and "lava" in texts[0].lower()  # Whisper's words, not CLSR's rough ones
    stored = Index.open(ix).transcripts([got.hits[0].id], "whisper-base")
    assert stored == {got.hits[0].id: texts[0]}
    again, ms_again = Asker(ix, small_llm, context="asr").context_texts(got.hits)
    assert again == texts and ms_again < ms  # read back, not transcribed again
    assert Index.open(ix).rows(("id", "source", "start", "end", "text")) == before
    # re-indexing a changed file forgets its transcripts (they described the old audio)
    index = Index.open(ix)
    index.remove([str(speech_dir / "volcano.wav")])
    assert index.transcripts([got.hits[0].id], "whisper-base") == {}


def test_context_asr_over_a_cascade_of_another_whisper_uses_whisper_base(rag_index: Path,
                                                                         small_llm) -> None:
    asker = Asker(rag_index, small_llm, context="asr")  # tiny.en is not the ASR asked for
    got = asker.retrieve("bread", k=1)
    texts, ms = asker.context_texts(got.hits)
    assert ms > 0 and texts[0]


def test_context_asr_transcribes_overlapping_windows_in_one_pass(tmp_path: Path,
                                                                speech_dir: Path,
                                                                small_llm) -> None:
    import numpy as np
    import soundfile as sf

    parts = [sf.read(speech_dir / f"{n}.wav", dtype="float32") for n in TOPICS]
    talk = tmp_path / "talk.wav"  # three topics, about 20 s
    sf.write(talk, np.concatenate([a for a, _ in parts]), parts[0][1])
    ix = tmp_path / "ix"
    speechrag.index_audio([talk], ix, model="cascade-tiny", segmenter=SegmenterConfig.of(10, 5))
    rows = sorted(Index.open(ix).rows(("id", "source", "start", "end")),
                  key=lambda r: r["start"])
    a, b = rows[1], rows[2]  # 10 s windows every 5 s: they overlap
    assert a["start"] < b["start"] < a["end"]
    hits = [Hit(r["source"], r["start"], r["end"], 0.5, None, r["id"]) for r in (b, a)]
    asker = Asker(ix, small_llm, context="asr")  # Whisper base, not the index's tiny.en
    passes: list[float] = []
    whisper = asker.whisper
    real = whisper.transcribe_words

    def counted(samples, on_progress=None):  # the real Whisper, its calls counted
        passes.append(len(samples) / 16000)
        return real(samples)

    whisper.transcribe_words = counted
    texts, _ = asker.context_texts(hits)
    assert passes == [pytest.approx(b["end"] - a["start"], abs=0.05)]  # one pass, the union
    assert all(texts)
    shared = set(texts[0].lower().split()) & set(texts[1].lower().split())
    assert shared  # the overlap's words are in both windows' text


def test_given_hits_skip_retrieval_and_keep_its_timing(rag_index: Path, small_llm) -> None:
    asker = Asker(rag_index, small_llm)
    hits = asker.retrieve("violin strings", k=2).hits
    answer = asker.stream(retrieved=Retrieved("violin strings", hits, None,
                                              {"retrieve_ms": 50.0})).text()
    assert answer.hits == hits and answer.timings["retrieve_ms"] == 50.0
    assert answer.timings["first_token_ms"] >= 50.0


# -- bad input ----------------------------------------------------------------------------------


def test_bad_indexes_and_models_are_named(tmp_path: Path, rag_index: Path) -> None:
    from speechrag.index import IndexConfigError
    from speechrag.llm import LLMError

    with pytest.raises(IndexConfigError, match="not a speechrag index"):
        Asker(tmp_path / "nowhere", SMALL)
    empty = tmp_path / "empty"
    speechrag.index_texts([], empty)
    with pytest.raises(ValueError, match="holds nothing"):
        Asker(empty, SMALL)
    with pytest.raises(LLMError, match="no model file"):
        Asker(rag_index, str(tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(LLMError, match="cannot load"):
        Asker(rag_index, str(junk))
    with pytest.raises(LLMError, match="unknown LLM"):
        Asker(rag_index, "gpt-17")
    with pytest.raises(LLMError, match="not a language model"):
        Asker(rag_index, "whisper-base")
    with pytest.raises(ValueError, match="unknown context"):
        Asker(rag_index, SMALL, context="magic")


def test_answer_to_dict_is_json(rag_index: Path, small_llm) -> None:
    answer = Asker(rag_index, small_llm).ask("volcano", k=1)
    data = json.loads(json.dumps(answer.to_dict()))
    assert set(data) >= {"query", "text", "citations", "hits", "timings"}
