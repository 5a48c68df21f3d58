"""Non-autoregressive token decoder over CIF embeddings (Paraformer-style).

Paraformer: Fast and Accurate Parallel Transformer for Non-autoregressive End-to-End
Speech Recognition (Gao et al., 2022), https://arxiv.org/abs/2206.08317; CLSR's
speech decoder (../shared/papers/000).

All N tokens are predicted in one pass: the CIF embeddings are the queries, they
attend to each other (no causal mask) and to the encoder states. Logits are over
the **text encoder's tokenizer vocabulary**, so the decoded ids feed the text
encoder directly. The output layer is tied to the text encoder's word-embedding
matrix through a learned linear map (D -> E), which keeps the decoder small
(a free 30,522 x D output matrix would dwarf the rest).

Shapes: B batch, N tokens, S encoder states, D decoder width, E text-encoder width,
V vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NarDecoderConfig:
    d_model: int = 256
    n_layer: int = 3
    n_head: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    max_tokens: int = 512  # positional table size: 40 s of speech is ~130 tokens
    # "whisper": a run from scratch starts the layers, final norm and positions from the
    # first n_layer blocks of the model's Whisper decoder (models/whisper_decoder.py);
    # d_model, n_head and d_ff must then be Whisper's. "": random initialization.
    init: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class NarDecoder(nn.Module):
    """CIF embeddings (B, N, D) + encoder states (B, S, D_enc) -> logits (B, N, V)."""

    def __init__(self, config: NarDecoderConfig, d_encoder: int,
                 word_embeddings: torch.Tensor) -> None:
        """word_embeddings: (V, E), the text encoder's input embedding matrix (frozen)."""
        super().__init__()
        self.config = config
        d = config.d_model
        self.memory_proj = nn.Linear(d_encoder, d) if d_encoder != d else nn.Identity()
        self.positions = nn.Embedding(config.max_tokens, d)
        layer = nn.TransformerDecoderLayer(d, config.n_head, config.d_ff, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, config.n_layer, norm=nn.LayerNorm(d))
        self.to_word_space = nn.Linear(d, word_embeddings.shape[1])
        self.register_buffer("word_embeddings", word_embeddings.detach().clone())
        self.out_bias = nn.Parameter(torch.zeros(word_embeddings.shape[0]))

    def forward(self, tokens: torch.Tensor, n_tokens: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, N, D) from CIF, n_tokens (B,), memory (B, S, D_enc) encoder states,
        memory_mask (B, S) True on real states -> logits (B, N, V)."""
        return self.output_from_hidden(self.hidden(tokens, n_tokens, memory, memory_mask))

    def output_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """(B, N, D) final (normalized) decoder states -> logits (B, N, V)."""
        return self.to_word_space(h) @ self.word_embeddings.T + self.out_bias

    def hidden(self, tokens: torch.Tensor, n_tokens: torch.Tensor, memory: torch.Tensor,
               memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's final states (B, N, D), before the output layer."""
        n = tokens.shape[1]
        if n > self.config.max_tokens:
            raise ValueError(f"{n} tokens > max_tokens {self.config.max_tokens}")
        x = tokens + self.positions(torch.arange(n, device=tokens.device))[None]
        pad = torch.arange(n, device=tokens.device)[None] >= n_tokens[:, None]
        pad &= (n_tokens > 0)[:, None]  # a row with no tokens: attend freely, output unused
        return self.layers(x, self.memory_proj(memory), tgt_key_padding_mask=pad,
                           memory_key_padding_mask=None if memory_mask is None else ~memory_mask)

    def output(self, h: torch.Tensor) -> torch.Tensor:
        """The output layer alone on (B, N, D) (final norm included) -> logits (B, N, V).
        CLSR's auxiliary loss scores the CIF embeddings with it."""
        return self.to_word_space(self.layers.norm(h)) @ self.word_embeddings.T + self.out_bias
