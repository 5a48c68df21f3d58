from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechrag import audio
from speechrag.audio import SAMPLE_RATE
from speechrag.models.speech_states import (
    SpeechStates,
    autocast_dtype,
    length_batches,
    piece_bounds,
)
from speechrag.segment import Segment, fixed_windows


@pytest.fixture(scope="module")
def states() -> SpeechStates:
    return SpeechStates("whisper-tiny.en", dtype="float32")


@pytest.fixture(scope="module")
def long_wav(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 50 s of real speech: the three recordings, twice over."""
    parts = [audio.load(speech_dir / f"{n}.wav") for n in ("volcano", "violin", "bread")] * 2
    path = tmp_path_factory.mktemp("long") / "long.wav"
    import soundfile as sf

    sf.write(str(path), np.concatenate(parts), SAMPLE_RATE)
    return path


def test_piece_bounds_cut_on_the_grid_and_merge_slivers() -> None:
    assert piece_bounds(0.0, 40.0) == [(0.0, 20.0), (20.0, 40.0)]
    assert piece_bounds(20.0, 60.0) == [(20.0, 40.0), (40.0, 60.0)]
    assert piece_bounds(40.0, 47.5) == [(40.0, 47.5)]
    assert piece_bounds(19.0, 41.0) == [(19.0, 41.0)]  # 1 s slivers at both edges merged
    assert piece_bounds(13.0, 61.0) == [(13.0, 20.0), (20.0, 40.0), (40.0, 61.0)]
    assert piece_bounds(0.0, 0.5) == [(0.0, 0.5)]
    for a, b in [(0.0, 40.0), (13.0, 61.0), (3.3, 97.1)]:
        bounds = piece_bounds(a, b)
        assert bounds[0][0] == a and bounds[-1][1] == b
        assert all(x[1] == y[0] for x, y in zip(bounds, bounds[1:], strict=False))
        assert all(e - s <= 22.0 for s, e in bounds)


def test_length_batches_group_similar_lengths_within_the_limit() -> None:
    secs = [40.0, 5.0, 39.0, 6.0, 300.0]
    groups = length_batches(secs, limit=85.0)
    assert sorted(i for g in groups for i in g) == list(range(5))
    assert [4] in groups
    assert all(sum(secs[i] for i in g) <= 85.0 or len(g) == 1 for g in groups)
    assert groups[:2] == [[1, 3, 2], [0]]  # shortest first


def test_overlapping_windows_encode_each_second_once(states: SpeechStates,
                                                     long_wav: Path) -> None:
    windows = list(fixed_windows(long_wav, 40.0, 20.0))
    duration = len(audio.load(long_wav)) / SAMPLE_RATE
    assert len(windows) >= 2 and duration > 40.0
    before = states.encoded_s
    padded, mask = states.segments(windows[:1])
    padded2, mask2 = states.segments(windows[1:])  # a later call reuses [20, 40)
    assert states.encoded_s - before == pytest.approx(duration, abs=0.01)
    assert int(mask[0].sum()) == 2000
    # the shared piece's states are identical in both windows
    np.testing.assert_array_equal(padded[0, 1000:2000].numpy(), padded2[0, :1000].numpy())
    # every window's states equal its pieces encoded alone
    alone = states.encode([windows[1].samples[: 20 * SAMPLE_RATE]])[0]
    torch.testing.assert_close(padded2[0, :1000], alone, atol=1e-4, rtol=1e-4)


def test_batched_pieces_match_single_runs(states: SpeechStates, speech_dir: Path) -> None:
    clips = [audio.load(speech_dir / f"{n}.wav") for n in ("volcano", "violin")]
    clips.append(clips[0][: SAMPLE_RATE // 3])
    both = states.encode(clips)
    for clip, got in zip(clips, both, strict=True):
        assert got.shape[0] == -(-(len(clip) // 160) // 2)  # 100 frames/s, 2 per state
        torch.testing.assert_close(got, states.encode([clip])[0], atol=2e-4, rtol=1e-3)


def test_queries_past_30s_keep_their_tail(states: SpeechStates, long_wav: Path) -> None:
    clip = audio.load(long_wav)
    assert len(clip) > 30 * SAMPLE_RATE
    padded, mask = states.clips([clip, clip[:SAMPLE_RATE]])
    assert int(mask[0].sum()) == 1500 + -(-((len(clip) - 30 * SAMPLE_RATE) // 160) // 2)
    assert int(mask[1].sum()) == 50
    assert padded.shape == (2, int(mask[0].sum()), 384)


def test_segments_that_do_not_overlap_are_not_confused(states: SpeechStates,
                                                       speech_dir: Path) -> None:
    """The cache is keyed by the samples, so two files' pieces with the same times
    never share states."""
    a, b = (audio.load(speech_dir / f"{n}.wav") for n in ("volcano", "bread"))
    n = min(len(a), len(b))
    segs = [Segment(name, 0.0, n / SAMPLE_RATE, x[:n]) for name, x in (("a", a), ("b", b))]
    padded, _ = states.segments(segs)
    assert not torch.allclose(padded[0], padded[1])


def test_bf16_states_stay_close_to_fp32(speech_dir: Path, states: SpeechStates) -> None:
    clip = audio.load(speech_dir / "violin.wav")
    fast = SpeechStates("whisper-tiny.en", dtype="bfloat16")
    ref, got = states.encode([clip])[0], fast.encode([clip])[0]
    assert got.dtype == torch.float32
    assert float((got - ref).norm() / ref.norm()) < 0.05


def test_dtype_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert autocast_dtype("float32") is None
    assert autocast_dtype("bfloat16") is torch.bfloat16
    assert autocast_dtype("auto", device="cuda") is torch.bfloat16
    monkeypatch.setenv("SPEECHRAG_ENCODER_DTYPE", "float32")
    assert autocast_dtype() is None
    monkeypatch.setenv("SPEECHRAG_ENCODER_DTYPE", "fp8")
    with pytest.raises(ValueError, match="SPEECHRAG_ENCODER_DTYPE"):
        autocast_dtype()
