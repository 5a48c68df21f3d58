from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechrag import audio
from speechrag.audio import SAMPLE_RATE, AudioError

from .conftest import write_wav


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def test_stereo_44k_becomes_16k_mono_with_pitch_kept(tmp_path: Path) -> None:
    left, right = tone(440, 3.0, 44100), tone(440, 3.0, 44100)
    path = write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), 44100)
    x = audio.load(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 3 * SAMPLE_RATE) <= 2
    assert abs(peak_hz(x) - 440) < 2


def test_streamed_resampling_matches_whole_file(tmp_path: Path) -> None:
    x44 = tone(1000, 5.0, 44100) + 0.1 * tone(3000, 5.0, 44100)
    path = write_wav(tmp_path / "t.wav", x44, 44100)
    streamed = np.concatenate(list(audio.stream(path, block_s=0.7)))
    whole = soxr.resample(x44, 44100, SAMPLE_RATE, quality="HQ")
    n = min(len(streamed), len(whole))
    assert abs(len(streamed) - len(whole)) <= 2
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_odd_sample_rate(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "odd.wav", tone(300, 2.0, 11025), 11025)
    x = audio.load(path)
    assert abs(len(x) - 2 * SAMPLE_RATE) <= 2 and abs(peak_hz(x) - 300) < 2


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_other_soundfile_formats(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"t.{fmt}"
    sf.write(str(path), tone(500, 2.0, 22050), 22050, format=fmt.upper())
    assert abs(peak_hz(audio.load(path)) - 500) < 3


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_container_through_ffmpeg(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "t.wav", tone(600, 2.0, 16000))
    m4a = tmp_path / "t.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), str(m4a)], check=True)
    x = audio.load(m4a)
    assert abs(len(x) / SAMPLE_RATE - 2.0) < 0.1 and abs(peak_hz(x) - 600) < 3
    assert audio.duration_s(m4a) == pytest.approx(2.0, abs=0.1)


def test_duration_from_header(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "d.wav", tone(200, 2.5, 8000), 8000)
    assert audio.duration_s(path) == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.wav", b"", "empty file"),
        ("junk.wav", bytes(range(256)) * 40, "not a readable audio file"),
        ("notes.txt", b"these are not the droids\n" * 20, "not a readable audio file"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as info:
        audio.load(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_zero_length_wav(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="zero-length"):
        audio.load(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="file not found"):
        audio.load(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="not a regular file"):
        audio.load(tmp_path)


def test_truncated_wav_gives_what_is_there_or_a_clear_error(tmp_path: Path) -> None:
    good = write_wav(tmp_path / "good.wav", tone(440, 2.0, 16000))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:20000])
    try:
        x = audio.load(cut)
    except AudioError as e:
        assert str(cut) in str(e)
    else:
        assert 0 < len(x) <= 2 * SAMPLE_RATE


def test_nan_samples_are_zeroed(tmp_path: Path) -> None:
    x = tone(440, 1.0, 16000)
    x[100:200] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    assert np.all(np.isfinite(audio.load(path)))


def test_read_span_is_the_slice_of_the_whole(tmp_path) -> None:
    import numpy as np
    import soundfile as sf

    from speechrag.audio import AudioError, load, read_span

    rng = np.random.default_rng(0)
    path = tmp_path / "x.wav"
    sf.write(str(path), rng.uniform(-0.5, 0.5, 16000 * 5).astype(np.float32), 16000,
             subtype="FLOAT")
    whole = load(path)
    np.testing.assert_allclose(read_span(path, 1.0, 2.5), whole[16000:40000], atol=1e-6)
    assert len(read_span(path, 4.0, 9.0)) == 16000  # cut at the end of the file
    at_44k = tmp_path / "y.wav"
    sf.write(str(at_44k), np.zeros(44100 * 3, dtype=np.float32), 44100)
    assert abs(len(read_span(at_44k, 0.5, 2.5)) - 32000) <= 2
    with pytest.raises(AudioError, match="empty span"):
        read_span(path, 2.0, 2.0)
