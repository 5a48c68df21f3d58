"""CLSR behind the one retriever interface: a trained checkpoint indexes and searches.

Segments go through Whisper's encoder on their actual length (each stretch of audio
once), then the checkpoint's aligner, VQ adaptor and the frozen text encoder; the
decoded tokens are kept as a rough transcript at no extra cost.
"""

from __future__ import annotations

import numpy as np
import torch

from speechrag.models.clsr import ClsrModel
from speechrag.retrievers.trained import TrainedRetriever


class ClsrRetriever(TrainedRetriever):
    kind = "clsr"
    model_cls = ClsrModel

    def embed(self, states: torch.Tensor, mask: torch.Tensor, document: bool = True
              ) -> tuple[np.ndarray, list[str | None]]:
        out = self.model(states, mask, document=document)
        return out["speech_emb"].numpy().astype(np.float32), list(self.model.transcripts(out))

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_text(texts).numpy()
