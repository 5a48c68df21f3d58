"""Fixtures for the model tests: real Whisper tiny.en states of three recordings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechrag import audio
from speechrag.models.losses import IGNORE
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.whisper_encoder import LogMel, WhisperEncoder

from ..conftest import TOPICS

QUESTIONS = ["where does lava come from", "a bowed string instrument", "what is baked from flour"]


def pad_ids(rows: list[list[int]]) -> torch.Tensor:
    n = max(len(r) for r in rows)
    return torch.tensor([r + [IGNORE] * (n - len(r)) for r in rows])


@pytest.fixture(scope="package")
def text() -> TextEncoder:
    return TextEncoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="package")
def batch(speech_dir: Path, text: TextEncoder) -> dict[str, torch.Tensor]:
    """Real Whisper tiny.en states of the three recordings, padded, with their targets."""
    enc, mel = WhisperEncoder.load("whisper-tiny.en"), LogMel()
    with torch.no_grad():
        states = [enc(mel(audio.load(speech_dir / f"{k}.wav"))[None])[0] for k in TOPICS]
    s = max(len(x) for x in states)
    padded = torch.stack([torch.nn.functional.pad(x, (0, 0, 0, s - len(x))) for x in states])
    mask = torch.arange(s)[None] < torch.tensor([len(x) for x in states])[:, None]
    q = text.token_ids(QUESTIONS)
    return {"states": padded, "state_mask": mask,
            "targets": pad_ids(text.token_ids(list(TOPICS.values()))),
            "query_ids": pad_ids(q).clamp(min=0),
            "query_lengths": torch.tensor([len(r) for r in q])}


