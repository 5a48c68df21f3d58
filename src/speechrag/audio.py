"""Read audio as 16 kHz mono float32, streamed in blocks so hour-long files never
sit in memory whole.

soundfile (libsndfile) reads wav, flac, ogg and mp3; anything else goes through
ffmpeg when it is installed. soxr resamples in streaming mode, so block edges
leave no clicks. Every failure is an :class:`AudioError` naming the file.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000  # Hz: what Whisper and silero-vad expect
BLOCK_S = 30.0  # seconds of audio decoded per block when streaming


class AudioError(ValueError):
    """An input file could not be read as audio. ``str()`` is one line: ``path: reason``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _soundfile_blocks(path: Path, block_s: float) -> Iterator[np.ndarray]:
    """Yield (n,) float32 mono blocks at 16 kHz decoded by libsndfile."""
    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        if rate <= 0:
            raise AudioError(path, f"invalid sample rate {rate}")
        resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(
            rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"
        )
        block = max(1, int(block_s * rate))
        while True:
            data = f.read(block, dtype="float32", always_2d=True)
            last = len(data) < block
            mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            mono = np.ascontiguousarray(mono, dtype=np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if len(mono):
                yield mono
            if last:
                return


def _ffmpeg_blocks(path: Path, block_s: float) -> Iterator[np.ndarray]:
    """Decode any container ffmpeg knows to 16 kHz mono float32, streamed from its stdout."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(path, "format not recognised by libsndfile, and ffmpeg is not installed")
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "f32le",
           "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    n_bytes = int(block_s * SAMPLE_RATE) * 4
    try:
        while chunk := proc.stdout.read(n_bytes):
            usable = len(chunk) - len(chunk) % 4
            yield np.frombuffer(chunk[:usable], dtype="<f4").astype(np.float32)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        code = proc.wait()
    if code != 0:
        last_line = err.splitlines()[-1] if err else f"ffmpeg exit status {code}"
        last_line = last_line.removeprefix(f"{path}: ")
        raise AudioError(path, f"not a readable audio file ({last_line})")


def stream(path: str | Path, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
    """Yield consecutive blocks of a file as (n,) float32 at 16 kHz mono.

    Raises :class:`AudioError` for missing, empty, corrupt or non-audio files, and
    for files that decode to no samples at all.
    """
    path = Path(path)
    _check_file(path)
    try:
        sf.info(str(path))
        blocks = _soundfile_blocks(path, block_s)
    except sf.LibsndfileError:
        blocks = _ffmpeg_blocks(path, block_s)
    n_total = 0
    try:
        for block in blocks:
            if not np.all(np.isfinite(block)):
                block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
            n_total += len(block)
            yield block
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as err:
        raise AudioError(path, f"corrupt audio ({err})") from err
    if n_total == 0:
        raise AudioError(path, "no audio samples (zero-length recording)")


def load(path: str | Path) -> np.ndarray:
    """Read a whole file: (n_samples,) float32, 16 kHz mono. For short files (queries, tests)."""
    return np.concatenate(list(stream(path)))


def read_span(path: str | Path, start_s: float, end_s: float) -> np.ndarray:
    """The audio from ``start_s`` to ``end_s`` of a file: (n,) float32 at 16 kHz. A file
    libsndfile reads is seeked to the span (an hour-long file costs only the span);
    anything else is decoded from the start and cut."""
    path = Path(path)
    _check_file(path)
    if end_s <= start_s:
        raise AudioError(path, f"empty span {start_s:.2f}-{end_s:.2f} s")
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            f.seek(min(int(start_s * rate), f.frames))
            data = f.read(int((end_s - start_s) * rate), dtype="float32", always_2d=True)
    except sf.LibsndfileError:
        a, b = round(start_s * SAMPLE_RATE), round(end_s * SAMPLE_RATE)
        out, at = [], 0
        for block in stream(path):
            lo, hi = max(a - at, 0), min(b - at, len(block))
            if hi > lo:
                out.append(block[lo:hi])
            at += len(block)
            if at >= b:
                break
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
    except (RuntimeError, OSError) as err:
        raise AudioError(path, f"corrupt audio ({err})") from err
    mono = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    if rate != SAMPLE_RATE and len(mono):
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)


MAX_QUERY_S = 120.0  # a spoken question; longer is a recording to index, not a query


def load_query_audio(path: str | Path) -> np.ndarray:
    """A spoken query: (n,) float32, 16 kHz. Empty, unreadable or longer than
    MAX_QUERY_S is an :class:`AudioError` naming the file."""
    seconds = duration_s(path)
    if seconds > MAX_QUERY_S:
        raise AudioError(path, f"{seconds:.0f} s is too long for a spoken query (at most "
                               f"{MAX_QUERY_S:.0f} s); index long recordings instead")
    samples = load(path)
    if not len(samples):
        raise AudioError(path, "no audio samples")
    return samples


def duration_s(path: str | Path) -> float:
    """Duration in seconds, from the header when libsndfile knows the format, else by decoding."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
        if info.frames > 0:
            return info.frames / info.samplerate
    except sf.LibsndfileError:
        pass
    ffprobe = shutil.which("ffprobe")
    if ffprobe is not None:  # reads the container header: no need to decode hours of audio
        proc = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format=duration",
                               "-of", "csv=p=0", str(path)], capture_output=True, text=True)
        try:
            return float(proc.stdout.strip())
        except ValueError:
            pass
    return sum(len(b) for b in stream(path)) / SAMPLE_RATE
