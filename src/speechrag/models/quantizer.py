"""The VQ adaptor: decoder token distributions -> "text-like" input embeddings.

CLSR (../shared/papers/000, the VQ adaptor): the non-autoregressive decoder's
logits become a one-hot argmax token, made differentiable with a straight-through
softmax, ``q_st = q + p - stopgrad(p)`` with ``p = softmax(logits / tau)``; times
the text encoder's input word-embedding matrix this is exactly the embedding of
the argmax token in the forward pass, and passes the softmax's gradient backward.
Shapes: B batch, N tokens, V vocabulary, E text-encoder width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def straight_through_one_hot(logits: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """logits (..., V) -> (..., V): one-hot argmax forward, softmax(logits / T) gradient."""
    p = F.softmax(logits / temperature, dim=-1)
    q = F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(p.dtype)
    return q + p - p.detach()


class VQAdaptor(nn.Module):
    """Straight-through one-hot tokens times a (frozen) word-embedding matrix (V, E)."""

    def __init__(self, word_embeddings: torch.Tensor, temperature: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("word_embeddings", word_embeddings.detach().clone())
        self.temperature = temperature

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logits (B, N, V) -> input embeddings (B, N, E), token ids (B, N)."""
        q = straight_through_one_hot(logits, self.temperature)
        return q @ self.word_embeddings.to(q.dtype), logits.argmax(dim=-1)
