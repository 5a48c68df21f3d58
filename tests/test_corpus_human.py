"""The human-speech corpus: Debian's real recordings as spoken queries, beside the same
sentences in TTS voices, scored by the one evaluator with the real tiny.en cascade."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechrag import audio
from speechrag.corpus import tts
from speechrag.corpus.human import HUMAN, build_human_corpus, read_transcripts
from speechrag.evaluate import evaluate


@pytest.fixture(scope="module")
def human_corpus(tmp_path_factory):
    return build_human_corpus(tmp_path_factory.mktemp("human"), voices=("flite:slt",),
                              distractors=200)


def test_transcripts_are_parsed_and_bad_lines_named(tmp_path: Path) -> None:
    good = tmp_path / "transcription"
    good.write_text("<s> ten of  clubs </s> (001)\n\n<s> five five </s> (004)\n")
    assert read_transcripts(good) == [("001", "ten of clubs"), ("004", "five five")]
    bad = tmp_path / "bad"
    bad.write_text("<s> ten of clubs </s> (001)\nten of clubs\n")
    with pytest.raises(ValueError, match=r"bad:2: not a"):
        read_transcripts(bad)
    empty = tmp_path / "empty"
    empty.write_text("<s> </s> (001)\n")
    with pytest.raises(ValueError, match="empty:1"):
        read_transcripts(empty)


def test_every_recording_is_asked_in_every_voice(human_corpus) -> None:
    c = human_corpus
    assert len(c.queries) == 10 and {q["kind"] for q in c.queries} == {"librivox", "cards"}
    assert len(c.documents) == 10 + 200
    assert len({d["id"] for d in c.documents}) == len(c.documents)
    assert [d["text"] for d in c.documents[:10]] == [q["text"] for q in c.queries]
    assert {q["id"] for q in c.queries} == {q["passage_id"] for q in c.spoken_queries}
    assert sorted({q["voice"] for q in c.spoken_queries}) == ["flite:slt", HUMAN]
    assert len(c.spoken_queries) == 20 and c.manifest == []
    for q in c.spoken_queries:
        assert 0.5 < audio.duration_s(q["audio"]) < 10, q["audio"]
    dashwood = next(q for q in c.spoken_queries if q["voice"] == HUMAN and "0870" in q["id"])
    assert dashwood["text"].startswith("and mister john dashwood")
    assert abs(audio.duration_s(dashwood["audio"]) - 7.1) < 0.01  # the recording itself


def test_rebuild_keeps_audio_and_refuses_another_config(human_corpus) -> None:
    root = human_corpus.root
    slt = next(q["audio"] for q in human_corpus.spoken_queries if q["voice"] == "flite:slt")
    before = Path(slt).stat().st_mtime_ns
    again = build_human_corpus(root, voices=("flite:slt",), distractors=200)
    assert again.spoken_queries == human_corpus.spoken_queries
    assert Path(slt).stat().st_mtime_ns == before  # not spoken again
    with pytest.raises(ValueError, match="built another way"):
        build_human_corpus(root, voices=("flite:slt",), distractors=100)


def test_voice_roles_and_missing_data(tmp_path: Path) -> None:
    with pytest.raises(tts.VoiceError, match="reserved"):
        build_human_corpus(tmp_path / "a", voices=("festival:ked_diphone",))
    with pytest.raises(FileNotFoundError, match="apt-get install pocketsphinx-testdata"):
        build_human_corpus(tmp_path / "b", data=tmp_path / "nowhere")


def test_the_cascade_finds_human_speech(human_corpus, tmp_path: Path) -> None:
    """Whisper tiny.en on the real LibriVox reader: each sentence finds its transcript."""
    report = evaluate(human_corpus, "cascade-tiny", tmp_path, spoken=True)
    assert report["targets"] == "text documents"
    human = [q for q in report["queries"] if q["voice"] == HUMAN and q["kind"] == "librivox"]
    assert len(human) == 5
    assert sum(q["rank"] == 1 for q in human) >= 4, human
    assert set(report["retrieval"]["by_voice"]) == {"flite:slt", HUMAN}
