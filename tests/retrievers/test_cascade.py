from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechrag import audio
from speechrag.metrics import wer
from speechrag.retrievers import canonical_spec, load_retriever, resolve_spec, spec_of
from speechrag.retrievers.cascade import CascadeConfig, CascadeRetriever, Transcriber

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
    assert canonical_spec({"kind": "cascade"}) == canonical_spec(spec)  # defaults filled in
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
