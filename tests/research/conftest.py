"""The research tests use the model tests' fixtures: real Whisper tiny.en states."""

from __future__ import annotations

from ..models.conftest import batch, text  # noqa: F401
