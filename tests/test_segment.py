from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechrag import audio
from speechrag.audio import SAMPLE_RATE
from speechrag.segment import (
    SegmenterConfig,
    cut,
    fixed_windows,
    merge_regions,
    segments,
    vad_segments,
)

from .conftest import TOPICS, speak, write_wav


def ramp(seconds: float) -> np.ndarray:
    """Samples whose value encodes their own index, so slices can be checked exactly."""
    return (np.arange(int(seconds * SAMPLE_RATE)) / (seconds * SAMPLE_RATE)).astype(np.float32)


def spans(segs) -> list[tuple[float, float]]:
    return [(round(s.start_s, 3), round(s.end_s, 3)) for s in segs]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (100.0, [(0, 40), (20, 60), (40, 80), (60, 100)]),
        (5.0, [(0, 5)]),
        (41.0, [(0, 40), (20, 41)]),
        (40.0, [(0, 40)]),
        (75.0, [(0, 40), (20, 60), (40, 75)]),
    ],
)
def test_fixed_window_edges(seconds: float, expected: list) -> None:
    x = ramp(seconds)
    blocks = (x[i:i + 7000] for i in range(0, len(x), 7000))  # blocks not aligned to windows
    segs = list(cut("f", blocks, ((k * 20.0, k * 20.0 + 40.0) for k in range(10_000))))
    assert spans(segs) == expected
    for s in segs:  # every segment holds exactly its slice of the recording
        a, b = round(s.start_s * SAMPLE_RATE), round(s.end_s * SAMPLE_RATE)
        np.testing.assert_array_equal(s.samples, x[a:b])


def test_windows_from_a_file_cover_it(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "r.wav", ramp(50.0))
    segs = list(fixed_windows(path, window_s=10, hop_s=5))
    assert segs[0].start_s == 0 and segs[-1].end_s == pytest.approx(50.0)
    assert all(s.source == str(path) for s in segs)
    assert all(s.duration_s <= 10 + 1e-9 for s in segs)


def test_config_rejects_gaps_and_nonsense() -> None:
    with pytest.raises(ValueError, match="leave audio out"):
        SegmenterConfig(window_s=10, hop_s=20)
    with pytest.raises(ValueError):
        SegmenterConfig(window_s=0)


def test_merge_regions() -> None:
    regions = [(0.0, 5.0), (6.0, 12.0), (13.0, 30.0), (31.0, 100.0)]
    assert merge_regions(regions, 20.0) == [
        (0.0, 12.0), (13.0, 30.0), (31.0, 51.0), (51.0, 71.0), (71.0, 91.0), (91.0, 100.0)]
    assert merge_regions([], 40.0) == []


def test_vad_finds_the_speech_between_silences(tmp_path: Path) -> None:
    speech = audio.load(speak(TOPICS["violin"], tmp_path / "v.wav"))
    silence = np.zeros(5 * SAMPLE_RATE, dtype=np.float32)
    path = write_wav(tmp_path / "padded.wav", np.concatenate([silence, speech, silence]))
    segs = list(vad_segments(path, SegmenterConfig(window_s=40, vad=True)))
    assert segs, "speech was not found"
    speech_s = len(speech) / SAMPLE_RATE
    assert segs[0].start_s == pytest.approx(5.0, abs=0.5)
    assert segs[-1].end_s == pytest.approx(5.0 + speech_s, abs=0.7)
    assert all(s.duration_s <= 40 for s in segs)


def test_vad_on_silence_gives_no_segments(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "quiet.wav", np.zeros(8 * SAMPLE_RATE, dtype=np.float32))
    assert list(segments(path, SegmenterConfig(vad=True))) == []


def test_hour_long_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """One hour at 8 kHz: every window comes out, and memory stays a few windows' worth."""
    import tracemalloc

    import soundfile as sf

    path = tmp_path / "hour.wav"
    rate = 8000
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        minute = (0.1 * np.sin(2 * np.pi * 220 * np.arange(60 * rate) / rate)).astype(np.float32)
        for _ in range(60):
            f.write(minute)
    tracemalloc.start()
    n, last_end = 0, 0.0
    for seg in fixed_windows(path, window_s=40, hop_s=20):
        n += 1
        last_end = seg.end_s
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 179 and last_end == pytest.approx(3600.0)
    whole_file_mb = 3600 * SAMPLE_RATE * 4 / 2**20  # 220 MB as float32 at 16 kHz
    assert peak / 2**20 < 0.1 * whole_file_mb
