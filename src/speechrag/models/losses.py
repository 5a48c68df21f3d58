"""Training losses, each a pure function with a small module around it.

- :func:`info_nce`: contrastive NLL with in-batch negatives (CLSR's L_NLL, SEAL's
  stage-2 loss, and the contrastive pretraining paper's InfoNCE).
- :func:`quantity_loss`: CIF's quantity loss, mean |sum(alpha) - N| (CLSR's L_MAE).
- :class:`ClsrLoss`: L = (1 - a - b) L_CE + a L_MAE + b L_NLL (CLSR, Loss Function).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100  # target id on padding, in every loss over token targets


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float = 0.05,
             symmetric: bool = False) -> torch.Tensor:
    """queries (B, D), keys (B, D), row i of each a positive pair, the other rows its
    negatives. Cosine similarities / temperature, cross-entropy toward the diagonal;
    ``symmetric`` averages the query->key and key->query directions."""
    q = F.normalize(queries, dim=-1)
    k = F.normalize(keys, dim=-1)
    logits = q @ k.T / temperature  # (B, B)
    target = torch.arange(q.shape[0], device=q.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target)) / 2
    return loss


def quantity_loss(alphas: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """alphas (B, T) unscaled firing weights (zero on padding), target_lengths (B,)
    -> mean over the batch of |sum_t alpha - N|."""
    return (alphas.sum(dim=1) - target_lengths.to(alphas.dtype)).abs().mean()


class InfoNCE(nn.Module):
    def __init__(self, temperature: float = 0.05, symmetric: bool = False) -> None:
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return info_nce(queries, keys, self.temperature, self.symmetric)


class ClsrLoss(nn.Module):
    """Weighted sum of token cross-entropy, CIF quantity and contrastive NLL."""

    def __init__(self, a: float = 1 / 3, b: float = 1 / 3, temperature: float = 0.05,
                 pad_id: int = -100) -> None:
        super().__init__()
        if a < 0 or b < 0 or a + b > 1:
            raise ValueError(f"loss weights need a, b >= 0 and a + b <= 1 (got {a}, {b})")
        self.a, self.b, self.pad_id = a, b, pad_id
        self.nce = InfoNCE(temperature)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, alphas: torch.Tensor,
                target_lengths: torch.Tensor, query_emb: torch.Tensor,
                speech_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """logits (B, N, V), targets (B, N) with ``pad_id`` on padding, alphas (B, T),
        target_lengths (B,), query_emb and speech_emb (B, E) -> "loss" and its parts
        (not detached: a staged trainer may weight them its own way)."""
        ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=self.pad_id)
        mae = quantity_loss(alphas, target_lengths)
        nll = self.nce(query_emb, speech_emb)
        total = (1 - self.a - self.b) * ce + self.a * mae + self.b * nll
        return {"loss": total, "ce": ce, "mae": mae, "nll": nll}
