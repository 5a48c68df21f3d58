from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from speechrag import audio
from speechrag.audio import SAMPLE_RATE
from speechrag.corpus import tts
from speechrag.corpus.build import (
    CorpusConfig,
    build_corpus,
    choose_passages,
    load_corpus,
    speak_queries,
)
from speechrag.corpus.wikispoken import load_passages, passages, queries_for, speakable, split_of


def test_split_rule_is_the_fixed_one() -> None:
    assert split_of("Protostar") == {0: "test", 1: "dev"}.get(
        int(__import__("hashlib").sha1(b"Protostar").hexdigest(), 16) % 10, "train")
    counts = {s: len(passages(s)) for s in ("train", "dev", "test")}
    assert sum(counts.values()) == len(load_passages()) > 9900
    assert 900 < counts["test"] < 1100 and 900 < counts["dev"] < 1100
    assert all(p.split == split_of(p.title) for p in load_passages())


def test_validation_is_the_train_passages_training_holds_out(tmp_path: Path) -> None:
    """A validation corpus speaks exactly the train passages the training apps hold out
    (the same hash, at the smallest held-out share any config uses), in training
    voices only, and training refuses it."""
    from speechrag.corpus.build import load_corpus
    from speechrag.train.data import held_out, training_utterances

    val = passages("validation")
    assert len(val) == 302 and all(p.split == "train" for p in val)
    assert {p.passage_id for p in val} < {p.passage_id for p in passages("train")}
    with pytest.raises(tts.VoiceError, match="training voices only"):
        CorpusConfig(split="validation", voices=("flite:slt",))
    c = build_corpus(CorpusConfig(split="validation", passages=2, layout="passages",
                                  voices=("flite:kal",)), tmp_path)
    assert {m["passage_id"] for m in c.manifest} <= {p.passage_id for p in val}
    with pytest.raises(ValueError, match="training uses train-split corpora only"):
        training_utterances(load_corpus(tmp_path))
    # training's split of utterances by passage: the validation passages, no others
    utts = [SimpleNamespace(passage_id=p.passage_id) for p in passages("train")]
    _, held = held_out(utts, 0.04)  # type: ignore[arg-type]
    assert {u.passage_id for u in held} == {p.passage_id for p in val}


def test_queries_skip_empty_and_shared_descriptions() -> None:
    by_desc: dict[str, int] = {}
    for p in load_passages():
        by_desc[p.description.casefold()] = by_desc.get(p.description.casefold(), 0) + 1
    for p in load_passages()[:2000]:
        kinds = {q["kind"] for q in queries_for(p)}
        assert "title" in kinds
        has_desc = bool(p.description) and by_desc[p.description.casefold()] == 1
        assert ("description" in kinds) == has_desc


def test_speakable_text() -> None:
    text = speakable("Sailing (/ˈseɪlɪŋ/) uses the wind—acting on sails, 1901–2000. Café.")
    assert text == "Sailing uses the wind, acting on sails, 1901 to 2000. Cafe."
    long = " ".join(["This sentence has exactly seven words."] * 40)
    assert len(speakable(long).split()) <= 120


def test_choice_is_deterministic_and_seeded() -> None:
    a = choose_passages(CorpusConfig(passages=20))
    assert [p.title for p in a] == [p.title for p in choose_passages(CorpusConfig(passages=20))]
    assert [p.title for p in a] != [p.title for p in choose_passages(CorpusConfig(passages=20,
                                                                                   seed=1))]
    assert all(p.split == "test" for p in a)


def test_voice_roles_are_enforced() -> None:
    with pytest.raises(tts.VoiceError, match="reserved"):
        CorpusConfig(voices=("festival:ked_diphone",))
    with pytest.raises(tts.VoiceError, match="reserved"):
        tts.parse_voice("piper")
    with pytest.raises(tts.VoiceError, match="training voices only"):
        CorpusConfig(split="train", voices=("flite:slt",))
    CorpusConfig(split="train", voices=("espeak-ng", "flite:kal"))
    with pytest.raises(tts.VoiceError, match="unknown voice"):
        tts.role_of("say:alex")


def test_espeak_voices_are_drawn_from_the_seed() -> None:
    import random

    a = [tts.parse_voice("espeak-ng", random.Random(3)).id for _ in range(1)]
    b = [tts.parse_voice("espeak-ng", random.Random(3)).id for _ in range(1)]
    assert a == b and a[0].startswith("espeak-ng:en")
    v = tts.parse_voice("espeak-ng:en-gb+f3:p70:s150")
    assert (v.name, v.pitch, v.speed) == ("en-gb+f3", 70, 150)


def test_episodes_manifest_matches_the_audio(tiny_corpus) -> None:
    c = tiny_corpus
    assert len(c.manifest) == 4 and len(c.audio_files()) == 2
    assert {m["voice"] for m in c.manifest} == {"flite:slt", "festival:kal_diphone"}
    ids = {m["passage_id"] for m in c.manifest}
    assert {q["passage_id"] for q in c.queries} == ids
    for source in c.audio_files():
        x = audio.load(source)
        rows = sorted((m for m in c.manifest if str(c.root / m["audio"]) == source),
                      key=lambda m: m["start"])
        assert rows[-1]["end"] == pytest.approx(len(x) / SAMPLE_RATE, abs=0.01)
        for m in rows:  # speech inside each gold span, silence in the pauses between them
            inside = x[round(m["start"] * SAMPLE_RATE):round(m["end"] * SAMPLE_RATE)]
            assert np.sqrt(np.mean(inside ** 2)) > 0.01
        for a, b in zip(rows, rows[1:], strict=False):
            gap = x[round(a["end"] * SAMPLE_RATE) + 10:round(b["start"] * SAMPLE_RATE) - 10]
            assert len(gap) > 0.9 * SAMPLE_RATE and np.max(np.abs(gap)) < 1e-3


def test_rebuild_resumes_without_resynthesizing(tiny_corpus) -> None:
    root: Path = tiny_corpus.root
    parts = sorted((root / "parts").rglob("*.wav"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    (root / "audio" / "ep001.wav").unlink()  # as if the build died before this episode
    c = build_corpus(CorpusConfig(split="test", passages=4, per_episode=2), root)
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    assert (root / "audio" / "ep001.wav").is_file()
    assert c.manifest == tiny_corpus.manifest
    with pytest.raises(ValueError, match="another config"):
        build_corpus(CorpusConfig(split="test", passages=5), root)


def test_passages_layout(tmp_path: Path) -> None:
    c = build_corpus(CorpusConfig(split="dev", passages=2, layout="passages",
                                  voices=("flite:kal",)), tmp_path)
    assert len(c.audio_files()) == 2 and all(m["start"] == 0 for m in c.manifest)
    assert load_corpus(tmp_path).queries == c.queries


def test_parallel_build_is_the_same_corpus(tmp_path: Path) -> None:
    config = CorpusConfig(split="train", passages=4, layout="passages",
                          voices=("espeak-ng", "flite:kal"))
    serial = build_corpus(config, tmp_path / "serial")
    parallel = build_corpus(config, tmp_path / "parallel", workers=3)
    assert parallel.manifest == serial.manifest
    for m in serial.manifest:
        a = (tmp_path / "serial" / m["audio"]).read_bytes()
        assert (tmp_path / "parallel" / m["audio"]).read_bytes() == a
    spoken = speak_queries(tmp_path / "parallel", workers=3).spoken_queries
    alone = speak_queries(tmp_path / "serial").spoken_queries
    assert len(spoken) == len(alone) > 0
    for q, r in zip(spoken, alone, strict=True):
        assert {**q, "audio": ""} == {**r, "audio": ""}
        assert Path(q["audio"]).read_bytes() == Path(r["audio"]).read_bytes()


def test_a_failing_voice_stops_a_parallel_build(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def broken(text: str, voice: tts.Voice, out: Path) -> float:
        calls.append(out)
        raise tts.VoiceError(f"{voice.id} failed: no audio")

    monkeypatch.setattr(tts, "synthesize", broken)
    config = CorpusConfig(split="dev", passages=20, layout="passages", voices=("flite:kal",))
    with pytest.raises(tts.VoiceError, match="flite:kal failed"):
        build_corpus(config, tmp_path, workers=2)
    assert len(calls) < 20  # the rest were cancelled


def _median_f0(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Median pitch (Hz) of the voiced 40 ms frames, by autocorrelation (60-400 Hz)."""
    n = int(0.04 * rate)
    found = []
    for i in range(0, len(x) - n, n // 2):
        frame = x[i:i + n] - x[i:i + n].mean()
        if np.sqrt((frame ** 2).mean()) < 0.02 * np.abs(x).max():
            continue
        ac = np.correlate(frame, frame, "full")[n - 1:]
        lo, hi = rate // 400, rate // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            found.append(rate / lag)
    return float(np.median(found))


def test_shifted_flite_voices_parse_and_keep_their_role() -> None:
    import random

    v = tts.parse_voice("flite:awb:w1.2:f150")
    assert (v.name, v.warp, v.f0, v.id) == ("awb", 1.2, 150, "flite:awb:w1.20:f150")
    assert tts.parse_voice(v.id) == v and tts.parse_voice("flite:awb").id == "flite:awb"
    assert tts.role_of(v.id) == "training"
    assert tts.role_of("flite:slt:w1.1") == "evaluation"
    with pytest.raises(tts.VoiceError, match="training voices only"):
        CorpusConfig(split="train", voices=("flite:slt:shift",))
    CorpusConfig(split="train", voices=("flite:rms:shift",))
    for bad in ("flite:awb:w3", "flite:awb:f9999", "flite:awb:x1", "flite:awb:wfast"):
        with pytest.raises(tts.VoiceError, match="bad flite option"):
            tts.parse_voice(bad)
    with pytest.raises(tts.VoiceError, match="bad flite option"):  # before any file is written
        CorpusConfig(split="train", voices=("flite:awb:w3",))
    drawn = [tts.parse_voice("flite:kal:shift", random.Random(s)) for s in range(40)]
    assert drawn == [tts.parse_voice("flite:kal:shift", random.Random(s)) for s in range(40)]
    assert len({d.id for d in drawn}) > 30
    lo, hi = tts.SHIFT_WARP
    assert all(lo <= d.warp <= hi for d in drawn)
    f0_lo, f0_hi = tts.SHIFT_F0_HZ
    assert all(f0_lo - 5 <= d.f0 * d.warp <= f0_hi + 5 for d in drawn)


def test_a_shifted_voice_keeps_tempo_and_raises_pitch(tmp_path: Path) -> None:
    text = "The orangutans are great apes native to the rainforests of Indonesia."
    base = tts.synthesize(text, tts.parse_voice("flite:awb"), tmp_path / "base.wav")
    up = tts.synthesize(text, tts.parse_voice("flite:awb:w1.2:f150"), tmp_path / "up.wav")
    assert abs(up / base - 1) < 0.05  # the warp undoes the stretch: same tempo
    f_base = _median_f0(audio.load(tmp_path / "base.wav"))
    f_up = _median_f0(audio.load(tmp_path / "up.wav"))
    assert 100 < f_base < 160 and f_up > 1.25 * f_base  # awb ~130 Hz -> ~180 Hz


def test_spoken_queries_of_a_shifted_corpus_draw_a_speaker_each(tmp_path: Path) -> None:
    c = build_corpus(CorpusConfig(split="train", passages=3, layout="passages",
                                  voices=("flite:kal:shift",)), tmp_path)
    assert len({m["voice"] for m in c.manifest}) == 3
    assert all(m["voice"].startswith("flite:kal:w") for m in c.manifest)
    spoken = speak_queries(tmp_path, kinds=("title",)).spoken_queries
    assert len({q["voice"] for q in spoken}) == len(spoken) == 3
