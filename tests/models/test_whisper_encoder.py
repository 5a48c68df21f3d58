from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechrag import audio
from speechrag.assets import resolve
from speechrag.models.ct2 import read_ct2
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


def _hf_whisper(tmp_path: Path, n_mels: int) -> tuple[Path, torch.nn.Module]:
    """A small randomly initialised transformers Whisper, saved the way the
    ``openai/whisper-*`` repos are (WhisperForConditionalGeneration, safetensors)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=4,
                           decoder_layers=1, decoder_attention_heads=4, encoder_ffn_dim=256,
                           decoder_ffn_dim=128, num_mel_bins=n_mels, vocab_size=100, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
                           max_source_positions=1500)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # random biases everywhere, so a dropped one shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(tmp_path)
    return tmp_path, model.model.encoder


@pytest.mark.parametrize("n_mels", [80, 128])
def test_loads_hugging_face_whisper_weights(tmp_path: Path, speech_dir: Path,
                                            n_mels: int) -> None:
    """openai/whisper-* weights (transformers format) give transformers' own encoder
    output; large-v3's 128 mel bins reach the log-mel too."""
    from speechrag.models.speech_states import SpeechStates

    path, theirs = _hf_whisper(tmp_path, n_mels)
    ours = WhisperEncoder.load(str(path))
    assert ours.config.n_state == 64 and ours.config.n_mels == n_mels
    mel = LogMel(n_mels)(audio.load(speech_dir / "violin.wav"))
    assert mel.shape[0] == n_mels
    padded = torch.nn.functional.pad(mel, (0, MAX_FRAMES - mel.shape[1]))[None]
    with torch.no_grad():
        expected = theirs(padded).last_hidden_state
        torch.testing.assert_close(ours(padded), expected, atol=1e-4, rtol=1e-4)
    states = SpeechStates(str(path)).encode([audio.load(speech_dir / "violin.wav")])[0]
    assert states.shape == ((mel.shape[1] + 1) // 2, 64)


def test_not_a_whisper_model_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="not whisper"):
        WhisperEncoder.load(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty: not a Whisper model"):
        WhisperEncoder.load(str(empty))


def test_unreachable_hub_model_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline (as here), an openai/whisper-* name fails with the name in the message."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="openai/whisper-nonexistent-size"):
        WhisperEncoder.load("openai/whisper-nonexistent-size")
