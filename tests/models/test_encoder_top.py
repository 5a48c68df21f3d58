"""Whisper's top blocks as a trained part: split encoder == whole encoder at the start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechrag import audio
from speechrag.models.encoder_top import EncoderTop
from speechrag.models.whisper_encoder import LogMel, WhisperEncoder
from speechrag.speech_states import SpeechStates, pad_states, states_policy

from ..conftest import TOPICS


@pytest.fixture(scope="module")
def clips(speech_dir: Path) -> list[np.ndarray]:
    return [audio.load(speech_dir / f"{k}.wav") for k in TOPICS]


def test_bottom_then_top_is_the_whole_encoder(clips: list[np.ndarray]) -> None:
    """tiny.en has 4 blocks: blocks 1-2 frozen, then 3-4 + LayerNorm in the model."""
    enc, mel = WhisperEncoder.load("whisper-tiny.en"), LogMel()
    top = EncoderTop("whisper-tiny.en", 2)
    m = mel(clips[0])[None]
    with torch.no_grad():
        whole = enc(m)
        below = enc(m, n_blocks=2)
        assert not torch.allclose(below, whole, atol=1e-2)  # really stopped early
        mask = torch.ones(below.shape[:2], dtype=torch.bool)
        torch.testing.assert_close(top(below, mask), whole, atol=1e-4, rtol=1e-4)
    # the top is a copy with gradients, not a view of the frozen encoder
    assert all(p.requires_grad for p in top.parameters())
    assert top.blocks[0].qkv.weight.data_ptr() != enc.blocks[2].qkv.weight.data_ptr()


def test_padded_batch_matches_lone_runs(clips: list[np.ndarray]) -> None:
    """States below the top, padded to one batch: each real row gives its lone result,
    padding stays zero."""
    below = SpeechStates("whisper-tiny.en", dtype="float32", trained_top=1)
    whole = SpeechStates("whisper-tiny.en", dtype="float32")
    top = EncoderTop("whisper-tiny.en", 1)
    states, mask = below.clips(clips)
    assert len({int(n) for n in mask.sum(1)}) == 3  # really of different lengths
    with torch.no_grad():
        out = top(states, mask)
    ref, ref_mask = whole.clips(clips)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(out[mask], ref[mask], atol=1e-4, rtol=1e-4)
    assert float(out[~mask].abs().max()) == 0.0
    with torch.no_grad():  # and a row alone is the same as in the batch
        lone = top(*pad_states([states[0][mask[0]]]))[0]
    torch.testing.assert_close(lone, out[0][mask[0]], atol=1e-4, rtol=1e-4)


def test_policies_and_bad_depths() -> None:
    assert states_policy("whisper-base", "float32") == "whisper-base-piece20s-fp32"
    assert (states_policy("whisper-base", "float32", trained_top=2)
            == "whisper-base-piece20s-fp32-skip-top2")
    for k in (0, 5):
        with pytest.raises(ValueError, match="4 blocks"):
            EncoderTop("whisper-tiny.en", k)
    with pytest.raises(ValueError, match="4 blocks"):
        SpeechStates("whisper-tiny.en", trained_top=5)


def test_search_time_dtype_follows_the_encoder(clips: list[np.ndarray]) -> None:
    """At search time the top blocks run in the frozen encoder's dtype (bf16 where
    native), close to fp32 and returned as fp32; training ignores it."""
    below = SpeechStates("whisper-tiny.en", dtype="float32", trained_top=2)
    states, mask = below.clips(clips[:1])
    top = EncoderTop("whisper-tiny.en", 2).eval()
    with torch.no_grad():
        exact = top(states, mask)
        top.inference_dtype = torch.bfloat16
        fast = top(states, mask)
        top.train()
        trained = top(states, mask)
    assert fast.dtype == torch.float32 and not torch.equal(fast, exact)
    assert float((fast - exact).norm() / exact.norm()) < 0.03
    torch.testing.assert_close(trained, exact)
