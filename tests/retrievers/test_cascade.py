from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechrag import audio
from speechrag.metrics import wer
from speechrag.retrievers import canonical_spec, load_retriever, resolve_spec, spec_of
from speechrag.retrievers.cascade import (
    CascadeConfig,
    CascadeRetriever,
    MoonshineTranscriber,
    Transcriber,
    words_in,
)
from speechrag.segment import SegmenterConfig, segments

from ..conftest import TOPICS


@pytest.fixture(scope="module")
def recordings(speech_dir: Path) -> list[np.ndarray]:
    return [audio.load(speech_dir / f"{name}.wav") for name in TOPICS]


def test_transcripts_are_close_to_what_was_said(tiny_retriever, recordings) -> None:
    texts = tiny_retriever.asr.transcribe_many(recordings)
    assert wer(list(TOPICS.values()), texts) < 0.3


def test_batched_decoding_gives_each_segment_its_own_text(recordings) -> None:
    batched = Transcriber(CascadeConfig(whisper="whisper-tiny.en", batch_size=4))
    long = np.concatenate([recordings[0], np.zeros(16000 * 2, np.float32), recordings[1],
                           recordings[2], recordings[0]])  # over 30 s: two clips
    texts = batched.transcribe_many([recordings[2], long, recordings[1]])
    assert "oven" in texts[0].lower() and "violin" not in texts[0].lower()
    assert "volcano" in texts[1].lower() and "bow" in texts[1].lower()
    assert "violin" in texts[2].lower() and "oven" not in texts[2].lower()


def test_silence_and_empty_input(tiny_retriever) -> None:
    assert tiny_retriever.asr.transcribe(np.zeros(0, np.float32)) == ""
    vec, heard = tiny_retriever.encode_query_audio([np.zeros(16000, np.float32)])
    assert heard == [""] and vec.shape == (1, tiny_retriever.dim) and np.isfinite(vec).all()


def test_spoken_query_goes_through_asr(tiny_retriever, recordings) -> None:
    spoken, heard = tiny_retriever.encode_query_audio([recordings[1]])
    written = tiny_retriever.encode_text(list(TOPICS.values()))
    assert int(np.argmax(written @ spoken[0])) == 1
    assert "violin" in heard[0].lower()  # the words heard are what the vector encodes
    np.testing.assert_allclose(tiny_retriever.encode_text(heard), spoken, atol=1e-6)
    assert np.allclose(np.linalg.norm(spoken, axis=1), 1.0, atol=1e-5)


def test_presets_and_specs() -> None:
    spec = resolve_spec("cascade")
    assert spec["kind"] == "cascade" and spec["whisper"] == "whisper-base"
    assert spec["asr_pass"] == "file"  # the default cascade transcribes each file once
    assert canonical_spec({"kind": "cascade", "asr_pass": "file"}) == canonical_spec(spec)
    # an index written before asr_pass was kept was cut window by window: it reads so
    assert canonical_spec({"kind": "cascade"}) == canonical_spec(resolve_spec("cascade-window"))
    with pytest.raises(ValueError, match="asr_pass"):
        canonical_spec({"kind": "cascade", "asr_pass": "twice"})
    assert resolve_spec("cascade-beam5")["beam_size"] == 5
    with pytest.raises(ValueError, match="unknown key"):
        canonical_spec({"kind": "cascade", "beam": 5})
    with pytest.raises(ValueError, match="unknown model"):
        load_retriever("no-such-model")


def test_model_json_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"kind": "cascade", "whisper": "whisper-tiny.en", "beam_size": 2}')
    r = load_retriever(str(path))
    assert isinstance(r, CascadeRetriever) and spec_of(r)["beam_size"] == 2
    path.write_text('{"whisper": "x"}')
    with pytest.raises(ValueError, match="'kind'"):
        load_retriever(str(path))


# -- one pass over each recording ----------------------------------------------------------------


def test_words_go_to_the_windows_holding_their_middle() -> None:
    words = [(0.0, 0.4, "a"), (4.8, 5.4, "b"), (9.7, 10.1, "c"), (12.0, 12.5, "d")]
    assert words_in(words, 0.0, 10.0) == "a b c"  # c's middle is 9.9
    assert words_in(words, 5.0, 15.0) == "b c d"  # b's middle is 5.1
    assert words_in(words, 20.0, 30.0) == ""


@pytest.fixture(scope="module")
def recording(tmp_path_factory, recordings) -> Path:
    """The three topics in one 30-odd second recording, a second of silence between."""
    gap = np.zeros(16000, np.float32)
    path = tmp_path_factory.mktemp("rec") / "talk.wav"
    audio_ = np.concatenate([recordings[0], gap, recordings[1], gap, recordings[2]])
    import soundfile as sf

    sf.write(path, audio_, 16000)
    return path


def test_one_pass_gives_each_window_what_was_said_in_it(recording, recordings) -> None:
    win = SegmenterConfig(window_s=10, hop_s=5)
    once = CascadeRetriever(CascadeConfig(whisper="whisper-tiny.en", asr_pass="file"))
    assert once.whole_recordings
    windows, vectors, texts = once.encode_recording(segments(recording, win))
    per_window = list(segments(recording, win))
    # the same windows as the per-window cascade cuts, and one vector per window
    assert [(w.start_s, w.end_s) for w in windows] == [(s.start_s, s.end_s) for s in per_window]
    assert vectors.shape == (len(windows), once.dim)
    np.testing.assert_allclose(vectors, once.text.encode(texts), atol=1e-5)
    # each window's words are what Whisper hears in that window alone, give or take the
    # words cut at its edges
    alone = once.asr.transcribe_many([s.samples for s in per_window])
    assert wer(alone, texts) < 0.35
    # the first window holds the volcano, the last the bread, not the other way round
    assert "volcano" in texts[0].lower() and "oven" not in texts[0].lower()
    assert "oven" in " ".join(texts[-2:]).lower() and "volcano" not in texts[-1].lower()
    # and the whole recording was heard: every topic's words across the windows
    joined = " ".join(texts).lower()
    assert all(w in joined for w in ("volcano", "violin", "oven"))


def test_indexing_with_one_pass_finds_the_moment(tmp_path, recording) -> None:
    import json

    import speechrag

    spec = tmp_path / "once.json"
    spec.write_text(json.dumps({"kind": "cascade", "whisper": "whisper-tiny.en",
                                "asr_pass": "file"}))
    report = speechrag.index_audio([recording], tmp_path / "ix", model=str(spec),
                                   segmenter=SegmenterConfig(window_s=10, hop_s=5))
    assert report.indexed == [str(recording)] and report.n_segments >= 5
    hit = speechrag.search(tmp_path / "ix", "a wooden string instrument played with a bow")[0]
    assert hit.start is not None and 5.0 <= hit.start <= 20.0 and "violin" in hit.text.lower()


def test_moonshine_transcribes_and_times_its_words(recordings) -> None:
    moon = MoonshineTranscriber(CascadeConfig(whisper="moonshine-tiny"))
    texts = moon.transcribe_many(recordings)
    assert wer(list(TOPICS.values()), texts) < 0.35
    words = moon.transcribe_words(recordings[0])
    starts = [a for a, _, _ in words]
    assert words and starts == sorted(starts)
    assert all(0 <= a < b <= len(recordings[0]) / 16000 + 0.5 for a, b, _ in words)
    assert moon.transcribe(np.zeros(0, np.float32)) == ""
