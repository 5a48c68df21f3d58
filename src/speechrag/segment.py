"""Cut long recordings into the segments a retriever embeds.

Two ways, both streamed (only about one window of audio is held at a time):

- fixed windows: ``window_s`` long every ``hop_s`` seconds (CLSR cuts long audio
  into 40 s segments; a 20 s hop keeps every answer whole in some window);
- VAD segments: silero-vad speech regions merged, gap by gap, up to ``max_s``.

Each :class:`Segment` keeps its source path and start/end in seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechrag import audio
from speechrag.audio import SAMPLE_RATE


@dataclass(frozen=True)
class SegmenterConfig:
    """How audio is cut. Saved in every index, so all its segments were cut the same way."""

    window_s: float = 40.0
    hop_s: float = 20.0
    vad: bool = False
    vad_threshold: float = 0.5
    vad_min_silence_ms: int = 300
    vad_pad_ms: int = 100

    @classmethod
    def of(cls, window_s: float | None = None, hop_s: float | None = None,
           vad: bool = False) -> SegmenterConfig:
        """A cut from optional user settings: the default window, and a hop of half the
        window, where they are not given (the overlap keeps every answer whole in some
        window)."""
        window_s = window_s if window_s is not None else cls.window_s
        return cls(window_s=window_s, hop_s=hop_s if hop_s is not None else window_s / 2,
                   vad=vad)

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.hop_s <= 0:
            raise ValueError(f"window ({self.window_s}) and hop ({self.hop_s}) must be > 0 s")
        if self.hop_s > self.window_s:
            raise ValueError(f"hop ({self.hop_s} s) longer than window ({self.window_s} s) "
                             "would leave audio out")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Segment:
    """A piece of a recording. ``samples``: (n,) float32 at 16 kHz mono."""

    source: str
    start_s: float
    end_s: float
    samples: np.ndarray = field(repr=False)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def cut(
    source: str, blocks: Iterable[np.ndarray], spans_s: Iterable[tuple[float, float]]
) -> Iterator[Segment]:
    """Cut a stream of 16 kHz blocks at spans (start_s, end_s) sorted by start.

    Spans may overlap and may be an endless generator: once the stream ends, spans
    are clipped to the audio and stop as soon as one reaches its end.
    """
    spans = iter(spans_s)
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # sample index of buf[0] in the recording
    pending = next(spans, None)
    last_end = 0
    for block in blocks:
        buf = np.concatenate([buf, block])
        while pending is not None:
            start, end = (round(t * SAMPLE_RATE) for t in pending)
            drop = min(start - buf_start, len(buf))  # audio before the next span is done with
            if drop > 0:
                buf, buf_start = buf[drop:], buf_start + drop
            if end > buf_start + len(buf):
                break
            yield Segment(source, start / SAMPLE_RATE, end / SAMPLE_RATE,
                          buf[start - buf_start:end - buf_start].copy())
            last_end = end
            pending = next(spans, None)
    total = buf_start + len(buf)
    while pending is not None and last_end < total:
        start, end = (round(t * SAMPLE_RATE) for t in pending)
        if start >= total:
            break
        end = min(end, total)
        yield Segment(source, start / SAMPLE_RATE, end / SAMPLE_RATE,
                      buf[start - buf_start:end - buf_start].copy())
        last_end = end
        pending = next(spans, None)


def fixed_windows(path: str | Path, window_s: float = 40.0, hop_s: float = 20.0,
                  source: str | None = None) -> Iterator[Segment]:
    """Windows of ``window_s`` every ``hop_s`` seconds; the last one ends at the audio's end."""
    spans = ((k * hop_s, k * hop_s + window_s) for k in itertools.count())
    return cut(source or str(path), audio.stream(path), spans)


_VAD_MODEL = None
VAD_BLOCK_S = 300.0  # seconds of audio given to silero-vad at once


def _vad_model():
    global _VAD_MODEL
    if _VAD_MODEL is None:
        from silero_vad import load_silero_vad

        _VAD_MODEL = load_silero_vad()
    return _VAD_MODEL


def speech_regions(path: str | Path, config: SegmenterConfig) -> list[tuple[float, float]]:
    """Speech regions (start_s, end_s) found by silero-vad, block by block."""
    import torch
    from silero_vad import get_speech_timestamps

    model = _vad_model()
    regions: list[tuple[float, float]] = []
    offset = 0
    for block in audio.stream(path, block_s=VAD_BLOCK_S):
        found = get_speech_timestamps(
            torch.from_numpy(block), model, threshold=config.vad_threshold,
            sampling_rate=SAMPLE_RATE, min_silence_duration_ms=config.vad_min_silence_ms,
            speech_pad_ms=config.vad_pad_ms,
        )
        regions += [((offset + r["start"]) / SAMPLE_RATE, (offset + r["end"]) / SAMPLE_RATE)
                    for r in found]
        offset += len(block)
    return regions


def merge_regions(regions: list[tuple[float, float]], max_s: float) -> list[tuple[float, float]]:
    """Merge consecutive speech regions while the merged span stays within ``max_s``;
    a single region longer than ``max_s`` is split into ``max_s`` pieces."""
    pieces: list[tuple[float, float]] = []
    for start, end in regions:
        while end - start > max_s:
            pieces.append((start, start + max_s))
            start += max_s
        pieces.append((start, end))
    merged: list[tuple[float, float]] = []
    for start, end in pieces:
        if merged and end - merged[-1][0] <= max_s:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def vad_segments(path: str | Path, config: SegmenterConfig,
                 source: str | None = None) -> Iterator[Segment]:
    """Speech-only segments up to ``config.window_s`` long (two passes over the file:
    VAD first, then cutting, so memory stays one block)."""
    spans = merge_regions(speech_regions(path, config), config.window_s)
    return cut(source or str(path), audio.stream(path), spans)


def segments(path: str | Path, config: SegmenterConfig,
             source: str | None = None) -> Iterator[Segment]:
    """The segments of one file under ``config``."""
    if config.vad:
        return vad_segments(path, config, source)
    return fixed_windows(path, config.window_s, config.hop_s, source)
