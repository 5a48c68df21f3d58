"""Whisper's top blocks as a trained part: split encoder == whole encoder at the start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from speechrag import audio
from speechrag.models.encoder_top import EncoderTop, grow_top_state
from speechrag.models.speech_states import SpeechStates, pad_states, states_policy
from speechrag.models.whisper_encoder import LogMel, WhisperEncoder

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


class _Holder(nn.Module):  # names the top as CLSR and SEAL do
    def __init__(self, k: int) -> None:
        super().__init__()
        self.encoder_top = EncoderTop("whisper-tiny.en", k)


def test_an_init_that_trains_more_blocks_keeps_the_trained_ones_on_top(
        clips: list[np.ndarray]) -> None:
    """A run from a checkpoint that trained the top block, now training the top 3: the
    trained block stays Whisper's last, the two under it start as Whisper's, and on a
    clip shorter than one 20 s piece step 0 computes what the checkpoint did."""
    old = _Holder(1)
    with torch.no_grad():  # "trained": every weight moved
        for p in old.parameters():
            p.add_(0.01 * torch.randn_like(p))
    new, fresh = _Holder(3), _Holder(3)
    missing, unexpected = new.load_state_dict(grow_top_state(old.state_dict(), 1, 3),
                                              strict=False)
    assert not unexpected and {k.split(".")[2] for k in missing} == {"0", "1"}
    assert torch.equal(new.encoder_top.blocks[2].qkv.weight, old.encoder_top.blocks[0].qkv.weight)
    assert torch.equal(new.encoder_top.blocks[0].qkv.weight,
                       fresh.encoder_top.blocks[0].qkv.weight)
    assert torch.equal(new.encoder_top.ln_post.weight, old.encoder_top.ln_post.weight)
    below3 = SpeechStates("whisper-tiny.en", dtype="float32", trained_top=3)
    below1 = SpeechStates("whisper-tiny.en", dtype="float32", trained_top=1)
    with torch.no_grad():
        grown = new.encoder_top(*below3.clips(clips[:1]))
        before = old.encoder_top(*below1.clips(clips[:1]))
    torch.testing.assert_close(grown, before, atol=1e-4, rtol=1e-4)
    # loaded by name alone, the trained block would sit at the bottom: not the same model
    naive = _Holder(3)
    naive.load_state_dict(old.state_dict(), strict=False)
    with torch.no_grad():
        assert not torch.allclose(naive.encoder_top(*below3.clips(clips[:1])), before,
                                  atol=1e-3)
    same = old.state_dict()
    assert grow_top_state(same, 1, 1) is same and grow_top_state(same, 0, 3) is same
    with pytest.raises(ValueError, match="may train more of them"):
        grow_top_state(new.state_dict(), 3, 1)


def test_top_blocks_per_piece_are_the_whole_encoder_on_each_piece(
        clips: list[np.ndarray]) -> None:
    """Scope "piece": in training (the model splits each row at the piece edges) and at
    search time (the piece encoder runs the blocks, each piece once) the trained blocks
    see one 20 s piece at a time, so with Whisper's own weights a segment's states are
    the whole encoder's on each piece; scope "segment" attends across the edge."""
    from speechrag.segment import Segment

    gap = np.zeros(audio.SAMPLE_RATE, dtype=np.float32)
    long = np.concatenate([c for clip in clips * 4 for c in (clip, gap)])[:60 * audio.SAMPLE_RATE]
    assert len(long) == 60 * audio.SAMPLE_RATE  # three pieces of 20 s

    def window(a: int, b: int) -> Segment:
        return Segment("rec.wav", float(a), float(b),
                       long[a * audio.SAMPLE_RATE:b * audio.SAMPLE_RATE])

    top = EncoderTop("whisper-tiny.en", 2, scope="piece").eval()
    whole = SpeechStates("whisper-tiny.en", dtype="float32")
    below = SpeechStates("whisper-tiny.en", dtype="float32", trained_top=2)
    first = window(0, 40)
    ref, ref_mask = whole.segments([first])
    assert ref_mask.shape[1] == 2000
    lower, mask = below.segments([first, window(0, 21)])  # 21 s: one piece (1 s joins it)
    with torch.no_grad():
        trained = top(lower, mask)
        across = top.run(lower, mask)  # scope "segment"
    torch.testing.assert_close(trained[:1], ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(across[:1], ref, atol=1e-2)
    torch.testing.assert_close(trained[1], across[1])  # one piece: the same computation
    assert float(trained[1][~mask[1]].abs().max()) == 0.0

    per_piece = SpeechStates("whisper-tiny.en", dtype="float32", trained_top=2, top=top.run)
    states, _ = per_piece.segments([first])
    torch.testing.assert_close(states, ref, atol=1e-4, rtol=1e-4)
    per_piece.segments([window(20, 60)])  # its first piece is the first window's second
    assert per_piece.encoded_s == 60.0
    with pytest.raises(ValueError, match="trained_top=0"):
        SpeechStates("whisper-tiny.en", top=top.run)
    with pytest.raises(ValueError, match="encoder_top_scope"):
        EncoderTop("whisper-tiny.en", 2, scope="window")
