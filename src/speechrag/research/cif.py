"""Continuous Integrate-and-Fire: frame-level encoder states -> token-level embeddings.

CIF: Continuous Integrate-and-Fire for End-to-End Speech Recognition
(Dong & Xu, ICASSP 2020), https://arxiv.org/abs/1905.11235; used by CLSR
(../shared/papers/000) between the speech encoder and its NAR decoder.

Each frame t gets a firing weight alpha_t in [0, 1]. Weights are integrated left
to right; every time the running sum crosses an integer a token "fires", and its
embedding is the alpha-weighted sum of the frames it covered (a frame that crosses
the boundary splits its weight between two tokens). A leftover of at least
``tail_threshold`` at the end fires one last token.

Vectorized form (no Python loop over frames): with c_t = sum_{s<=t} alpha_s, frame t
covers the interval [c_{t-1}, c_t) and gives token k the weight
``|[c_{t-1}, c_t) ∩ [k, k+1)|``, so tokens = W @ hidden with W of shape (B, N, T).
Shapes: B batch, T frames, D width, N tokens.
"""

from __future__ import annotations

import torch
from torch import nn

THRESHOLD = 1.0  # integrate up to one token's worth of weight


def cif(hidden: torch.Tensor, alphas: torch.Tensor, tail_threshold: float = 0.5
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden (B, T, D), alphas (B, T) with 0 <= alpha <= 1 (zero on padding)
    -> tokens (B, N, D) zero-padded, n_tokens (B,) long. N may be 0 (nothing fired)."""
    cum = torch.cumsum(alphas, dim=1)  # (B, T)
    prev = cum - alphas
    total = cum[:, -1] if alphas.shape[1] else alphas.new_zeros(alphas.shape[0])
    whole = torch.floor(total + 1e-6)
    n_tokens = (whole + ((total - whole) >= tail_threshold).to(whole.dtype)).long()
    n_max = int(n_tokens.max()) if n_tokens.numel() else 0
    k = torch.arange(n_max, device=alphas.device, dtype=alphas.dtype)[None, :, None]  # (1,N,1)
    weights = (torch.minimum(cum[:, None, :], k + 1) - torch.maximum(prev[:, None, :], k)).clamp(
        min=0)  # (B, N, T)
    weights = weights * (k < n_tokens[:, None, None]).to(weights.dtype)  # drop unfired tail
    return weights @ hidden, n_tokens


class CifPredictor(nn.Module):
    """Firing weights from encoder states (conv + ReLU + linear + sigmoid), then CIF.

    In training the alphas are rescaled so they sum to the target token count
    (the decoder then sees exactly N tokens); the quantity loss |sum(alpha) - N| is
    computed on the unscaled alphas, so the predictor learns to count by itself.
    """

    def __init__(self, d_model: int, kernel: int = 3, bias_init: float = -2.5,
                 tail_threshold: float = 0.5) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2)
        self.proj = nn.Linear(d_model, 1)
        nn.init.constant_(self.proj.bias, bias_init)  # start by firing rarely (~0.08/frame)
        self.tail_threshold = tail_threshold

    def alphas(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (B, T, D), mask (B, T) True on real frames -> alphas (B, T) in (0, 1)."""
        h = torch.relu(self.conv(hidden.transpose(1, 2))).transpose(1, 2)
        a = torch.sigmoid(self.proj(h)).squeeze(-1)
        return a if mask is None else a * mask.to(a.dtype)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None,
                target_lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> tokens (B, N, D), n_tokens (B,), raw alphas (B, T) (for the quantity loss)."""
        raw = self.alphas(hidden, mask)
        a = raw
        if target_lengths is not None:
            scale = target_lengths.to(raw.dtype) / raw.sum(dim=1).clamp(min=1e-4)
            a = (raw * scale[:, None]).clamp(max=1.0)
        tokens, n_tokens = cif(hidden, a, self.tail_threshold)
        if target_lengths is not None:  # scaling makes sum == N up to float error: pin it
            n_max = int(target_lengths.max())
            tokens = _fit(tokens, n_max)
            n_tokens = target_lengths.long()
        return tokens, n_tokens, raw


def _fit(tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Pad or cut the token axis of (B, N, D) to n."""
    if tokens.shape[1] >= n:
        return tokens[:, :n]
    pad = tokens.new_zeros(tokens.shape[0], n - tokens.shape[1], tokens.shape[2])
    return torch.cat([tokens, pad], dim=1)
