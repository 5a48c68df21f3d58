"""Window-level Q-Former: the SpeechLLM's projector from Whisper states to LLM inputs.

The contrastive SpeechLLM paper (../shared/papers/001, after BLIP-2's Q-Former and
SALMONN's window-level use of it) cuts the encoder states into fixed windows and lets a
few learned query vectors attend to each window; the window's queries, in order, are
the speech "tokens" the LLM reads. The paper takes 4 queries per 1/3 s window (12 tokens
a second) and 4 layers into an 8B LLM on GPUs. Here the defaults are 2 queries per 0.5 s
window (4 tokens a second) and 2 layers of width 384: on 2 CPU cores every speech token
costs a forward and a backward pass through the frozen LLM, English speech carries
about 3.5 LLM tokens a second (2.7 words), so 4 speech tokens a second keep the rate of
the words, and five 40 s hits make 800 tokens, about what their transcripts make.

Written here rather than taken from transformers' ``Blip2QFormerModel``: that one is a
BERT with its own config and text branch; this needs 40 lines of pre-norm attention on
windows, and skips windows that hold only padding (their cross-attention would have no
keys).

Shapes: B batch, S encoder states (50 a second), D encoder width, W windows,
Q queries per window, H the Q-Former's width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from speechrag.config import strict_config
from speechrag.models.speech_states import STATES_PER_S


@dataclass(frozen=True)
class QFormerConfig:
    input_dim: int = 512  # Whisper base's width
    dim: int = 384
    layers: int = 2
    heads: int = 6
    queries: int = 2  # learned queries per window
    window: int = 25  # encoder states per window (50 a second: 0.5 s)
    ffn_mult: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        problems = [f"{name} must be {rule}, not {getattr(self, name)}" for name, ok, rule in (
            ("input_dim", self.input_dim >= 1, ">= 1"),
            ("dim", self.dim >= 1 and self.dim % max(self.heads, 1) == 0,
             "a positive multiple of heads"),
            ("layers", self.layers >= 1, ">= 1"),
            ("heads", self.heads >= 1, ">= 1"),
            ("queries", self.queries >= 1, ">= 1"),
            ("window", self.window >= 1, ">= 1"),
            ("ffn_mult", self.ffn_mult >= 1, ">= 1"),
            ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
        ) if not ok]
        if problems:
            raise ValueError("qformer config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QFormerConfig:
        return strict_config(cls, values, "qformer config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tokens_per_second(self) -> float:
        return self.queries * STATES_PER_S / self.window


class _Layer(nn.Module):
    """Pre-norm: self-attention among a window's queries, cross-attention to the
    window's states, feed-forward."""

    def __init__(self, c: QFormerConfig) -> None:
        super().__init__()
        self.ln_self, self.ln_cross, self.ln_kv, self.ln_ffn = (nn.LayerNorm(c.dim)
                                                                for _ in range(4))
        self.self_attn = nn.MultiheadAttention(c.dim, c.heads, c.dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(c.dim, c.heads, c.dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(c.dim, c.ffn_mult * c.dim), nn.GELU(),
                                 nn.Dropout(c.dropout), nn.Linear(c.ffn_mult * c.dim, c.dim))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, q: torch.Tensor, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """q (N, Q, H) queries, x (N, window, H) states, pad (N, window) True on padding."""
        h = self.ln_self(q)
        q = q + self.drop(self.self_attn(h, h, h, need_weights=False)[0])
        kv = self.ln_kv(x)
        q = q + self.drop(self.cross_attn(self.ln_cross(q), kv, kv, key_padding_mask=pad,
                                          need_weights=False)[0])
        return q + self.drop(self.ffn(self.ln_ffn(q)))


class WindowQFormer(nn.Module):
    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        c = self.config = config
        self.in_proj = nn.Linear(c.input_dim, c.dim)
        self.position = nn.Parameter(torch.randn(c.window, c.dim) * 0.02)  # within a window
        self.queries = nn.Parameter(torch.randn(c.queries, c.dim) * 0.02)
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c.layers))
        self.ln_out = nn.LayerNorm(c.dim)

    def n_tokens(self, n_states: int) -> int:
        """How many speech tokens ``n_states`` encoder states become."""
        return math.ceil(n_states / self.config.window) * self.config.queries

    def forward(self, states: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, S, D), mask (B, S) True on real states -> tokens (B, W * Q, H) and
        their mask (B, W * Q), W = ceil(S / window): a window's queries are real when
        the window holds at least one real state; padded windows come out as zeros."""
        c = self.config
        b, s, _ = states.shape
        w = max(1, math.ceil(s / c.window))
        pad_to = w * c.window - s
        x = nn.functional.pad(self.in_proj(states), (0, 0, 0, pad_to))
        m = nn.functional.pad(mask, (0, pad_to), value=False)
        x = (x.view(b, w, c.window, c.dim) + self.position).view(b * w, c.window, c.dim)
        m = m.view(b * w, c.window)
        real = m.any(-1)  # (B * W,)
        q = self.queries.expand(int(real.sum()), -1, -1)
        xr, pad = x[real], ~m[real]
        for layer in self.layers:
            q = layer(q, xr, pad)
        out = x.new_zeros(b * w, c.queries, c.dim)
        out[real] = self.ln_out(q)
        token_mask = real[:, None].expand(-1, c.queries).reshape(b, w * c.queries)
        return out.view(b, w * c.queries, c.dim), token_mask
