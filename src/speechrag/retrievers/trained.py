"""What the trained retrievers (CLSR, SEAL, fused) share: how an index names a
checkpoint, how a checkpoint is verified, and the retriever base they implement.

An index stores ``{"kind": "clsr" | "seal", "checkpoint": PATH, "sha256": HEX}``: a
checkpoint that changed since the index was built is refused rather than silently
mixing two models' vectors in one table.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from speechrag.audio import SAMPLE_RATE
from speechrag.models.speech_states import SpeechStates, length_batches
from speechrag.models.trained import TrainedModel, file_sha256, read_checkpoint
from speechrag.retrievers.specs import CheckpointSpec, verified
from speechrag.segment import Segment

__all__ = ["CheckpointSpec", "TrainedRetriever", "checkpoint_arch", "file_sha256",
           "verified"]




def checkpoint_arch(path: str | Path) -> str:
    """"clsr" or "seal": what a checkpoint file holds."""
    return str(read_checkpoint(path)["arch"])


class TrainedRetriever:
    """The retriever interface for a trained checkpoint: audio goes through
    :class:`SpeechStates` (each stretch encoded once), then the model's :meth:`embed`;
    text goes through the model's frozen text side. A subclass sets ``kind`` and
    ``model_cls`` (a :class:`~speechrag.models.trained.TrainedModel`)."""

    kind: ClassVar[str]
    model_cls: ClassVar[type[TrainedModel]]

    def __init__(self, spec: CheckpointSpec) -> None:
        self.config = verified(spec)
        self.model = self.model_cls.load(self.config.checkpoint)
        top = self.model.encoder_top
        per_piece = top is not None and top.scope == "piece"
        self.speech = SpeechStates(self.model.config.whisper,
                                   trained_top=self.model.config.encoder_layers,
                                   top=top.run if per_piece else None)
        if top is not None:  # runs in the dtype of the encoder below it
            top.inference_dtype = self.speech.dtype
        if per_piece:  # the piece encoder runs them (each piece once): states come out
            # of the top blocks already
            self.model.encoder_top = None
        self.dim = self.model.text.dim

    def embed(self, states: torch.Tensor, mask: torch.Tensor, document: bool = True
              ) -> tuple[np.ndarray, list[str | None]]:
        """states (B, S, D), mask (B, S) -> (B, dim) unit-norm vectors and a rough
        transcript per clip (None where the model decodes none). ``document`` False:
        the clips are spoken questions (a model with a document side embeds them as
        questions)."""
        raise NotImplementedError

    @property
    def encoding(self) -> dict[str, float]:
        """Whisper encodes segments in pieces of this many seconds: it shapes the vectors
        (the top blocks attend within a piece), so an index records it."""
        return {"piece_s": self.speech.piece_s}

    @torch.inference_mode()
    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        """Segments of similar length are batched together (little padding)."""
        vecs = np.zeros((len(segments), self.dim), dtype=np.float32)
        texts: list[str | None] = [None] * len(segments)
        for group in length_batches([s.duration_s for s in segments]):
            v, t = self.embed(*self.speech.segments([segments[j] for j in group]))
            vecs[group] = v
            for k, j in enumerate(group):
                texts[j] = t[k]
        return vecs, texts

    @torch.inference_mode()
    def encode_query_audio(self, samples: list[np.ndarray]
                           ) -> tuple[np.ndarray, list[str | None]]:
        """spoken queries -> (N, dim) unit norm, and the model's rough transcript of each
        (None for a model that decodes none, as SEAL)."""
        vecs = np.zeros((len(samples), self.dim), dtype=np.float32)
        heard: list[str | None] = [None] * len(samples)
        for group in length_batches([len(s) / SAMPLE_RATE for s in samples]):
            v, t = self.embed(*self.speech.clips([samples[j] for j in group]),
                              document=False)
            vecs[group] = v
            for n, j in enumerate(group):
                heard[j] = t[n]
        return vecs, heard
