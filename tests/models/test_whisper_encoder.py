from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechrag import audio
from speechrag.assets import resolve
from speechrag.ct2 import read_ct2
from speechrag.models.whisper_encoder import MAX_FRAMES, LogMel, WhisperEncoder


@pytest.fixture(scope="module")
def encoder() -> WhisperEncoder:
    return WhisperEncoder.load("whisper-tiny.en")


@pytest.fixture(scope="module")
def mel(speech_dir: Path) -> torch.Tensor:
    return LogMel()(audio.load(speech_dir / "violin.wav"))


def test_reader_finds_the_encoder_tensors() -> None:
    w = read_ct2(Path(resolve("whisper-tiny.en")) / "model.bin",
                 keep=lambda n: n.startswith("encoder/"))
    assert w["encoder/conv1/weight"].shape == (384, 80, 3)
    assert w["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert int(w["encoder/num_heads"]) == 6
    assert not any(k.startswith("decoder/") for k in w)


def test_reproduces_ctranslate2_on_real_speech(encoder: WhisperEncoder, mel: torch.Tensor) -> None:
    """CTranslate2 encodes a 30 s padded window; ours must give the same states."""
    import ctranslate2

    padded = torch.nn.functional.pad(mel, (0, MAX_FRAMES - mel.shape[1]))
    ct2 = ctranslate2.models.Whisper(resolve("whisper-tiny.en"), device="cpu",
                                     compute_type="float32")
    theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(padded[None].numpy()),
                                 to_cpu=True))
    with torch.no_grad():
        ours = encoder(padded[None]).numpy()
    assert ours.shape == theirs.shape == (1, 1500, 384)
    norms = np.linalg.norm(ours, axis=-1) * np.linalg.norm(theirs, axis=-1)
    cos = (ours * theirs).sum(-1) / norms
    assert cos.min() > 0.999
    assert np.abs(ours - theirs).max() < 0.05


def test_actual_length_and_long_input(encoder: WhisperEncoder, mel: torch.Tensor) -> None:
    with torch.no_grad():
        states = encoder(mel[None])
        assert states.shape == (1, (mel.shape[1] + 1) // 2, 384)
        long = torch.cat([mel] * 6, dim=1)  # over 30 s: refused, SpeechStates cuts it
        assert long.shape[1] > MAX_FRAMES
        with pytest.raises(ValueError, match="SpeechStates"):
            encoder(long[None])


def test_padded_batch_matches_single_runs(encoder: WhisperEncoder, mel: torch.Tensor) -> None:
    short = mel[:, :301]
    batch = torch.stack([mel, torch.nn.functional.pad(short, (0, mel.shape[1] - 301))])
    with torch.no_grad():
        both = encoder(batch, n_frames=torch.tensor([mel.shape[1], 301]))
        alone = encoder(short[None])
        layers = encoder(short[None], return_layers=True)
    torch.testing.assert_close(both[1, :151], alone[0], atol=1e-4, rtol=1e-4)
    assert len(layers) == encoder.config.n_layer
    torch.testing.assert_close(layers[-1], alone)
