"""The pretrained sentence encoder that embeds transcripts, passages and questions.

A thin wrapper over sentence-transformers: ``encode(texts) -> (N, D)`` float32,
L2-normalized, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import os

import numpy as np

from speechrag.assets import resolve


class TextEncoder:
    """Sentence encoder by asset name (``all-MiniLM-L6-v2``), local directory or HF repo id."""

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> None:
        path = resolve(name)
        if os.path.isdir(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local copy never needs the hub
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start

        self.name = name
        self.batch_size = batch_size
        self.model = SentenceTransformer(path, device="cpu")
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: list[str]) -> np.ndarray:
        """texts: N strings -> (N, dim) float32, unit norm."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(list(texts), batch_size=self.batch_size,
                                normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)
