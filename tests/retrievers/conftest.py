"""The shipped CLSR's weights with either scope of its trained top blocks, and a 40 s
window of real speech to run them on (the retrievers' per-piece and per-segment paths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechrag import audio
from speechrag.retrievers import TRAINED_DIR
from speechrag.segment import Segment


def _with_scope(tmp_path_factory: pytest.TempPathFactory, scope: str) -> Path:
    import torch

    ckpt = torch.load(TRAINED_DIR / "clsr.pt", map_location="cpu", weights_only=False)
    ckpt["config"] = {**ckpt["config"], "encoder_top_scope": scope}
    path = tmp_path_factory.mktemp(scope) / f"clsr-{scope}.pt"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="session")
def piece_clsr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped CLSR's weights with ``encoder_top_scope: "piece"`` (as it ships)."""
    return _with_scope(tmp_path_factory, "piece")


@pytest.fixture(scope="session")
def segment_clsr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped CLSR's weights with ``encoder_top_scope: "segment"`` (how every CLSR
    before 2026-12-08 was trained: the top blocks attend over the whole window)."""
    return _with_scope(tmp_path_factory, "segment")


@pytest.fixture(scope="session")
def window_40s(speech_dir: Path) -> Segment:
    """The topic recordings in a row, cut to 40 s: two 20 s pieces."""
    clips = []
    for wav in sorted(speech_dir.glob("*.wav")):
        clips += [audio.load(wav), np.zeros(audio.SAMPLE_RATE // 2, dtype=np.float32)]
    samples = np.concatenate(clips * 4)[:40 * audio.SAMPLE_RATE]
    assert len(samples) == 40 * audio.SAMPLE_RATE
    return Segment("rec.wav", 0.0, 40.0, samples)
