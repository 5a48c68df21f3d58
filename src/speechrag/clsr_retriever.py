"""CLSR behind the one retriever interface: a trained checkpoint indexes and searches.

Segments go through Whisper's encoder on their actual length (each stretch of audio
once), then the checkpoint's CIF and decoder (or its CTC aligner), VQ adaptor and the
frozen text encoder; the decoded tokens are kept as a rough transcript at no extra cost.
"""

from __future__ import annotations

import numpy as np
import torch

from speechrag.checkpoints import TrainedRetriever
from speechrag.models.clsr import ClsrModel


class ClsrRetriever(TrainedRetriever):
    kind = "clsr"
    model_cls = ClsrModel

    def embed(self, states: torch.Tensor, mask: torch.Tensor
              ) -> tuple[np.ndarray, list[str | None]]:
        out = self.model(states, mask)
        tok = self.model.text.model.tokenizer
        texts: list[str | None] = [
            tok.decode(ids[:n].tolist(), skip_special_tokens=True)
            for ids, n in zip(out["token_ids"], out["n_tokens"], strict=True)]
        return out["speech_emb"].numpy().astype(np.float32), texts

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_text(texts).numpy()
