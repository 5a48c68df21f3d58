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


def rough_transcripts(model: ClsrModel, out: dict[str, torch.Tensor]) -> list[str | None]:
    """A CLSR forward pass's token_ids (B, N) and n_tokens (B,) -> B decoded texts."""
    tok = model.text.model.tokenizer
    return [tok.decode(ids[:n].tolist(), skip_special_tokens=True)
            for ids, n in zip(out["token_ids"], out["n_tokens"], strict=True)]


class ClsrRetriever(TrainedRetriever):
    kind = "clsr"
    model_cls = ClsrModel

    def embed(self, states: torch.Tensor, mask: torch.Tensor, document: bool = True
              ) -> tuple[np.ndarray, list[str | None]]:
        out = self.model(states, mask, document=document)
        return out["speech_emb"].numpy().astype(np.float32), rough_transcripts(self.model, out)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_text(texts).numpy()
