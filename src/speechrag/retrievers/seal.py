"""SEAL behind the one retriever interface: speech and text land in one space.

Segments and spoken queries go through Whisper's encoder (actual length, each
stretch of audio once), the trained adaptor, mean pooling and the shared
projection; text queries and text documents go through the frozen text encoder
and the same projection. There is no transcript (SEAL never decodes words), so hits
show none.
"""

from __future__ import annotations

import numpy as np
import torch

from speechrag.models.seal import SealModel
from speechrag.retrievers.trained import TrainedRetriever


class SealRetriever(TrainedRetriever):
    kind = "seal"
    model_cls = SealModel

    def embed(self, states: torch.Tensor, mask: torch.Tensor, document: bool = True
              ) -> tuple[np.ndarray, list[str | None]]:
        vecs = self.model(states, mask)["speech_emb"].numpy().astype(np.float32)
        return vecs, [None] * len(vecs)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model.encode_text(texts).numpy().astype(np.float32)
