"""The pretrained sentence encoder that embeds transcripts, passages and questions.

A thin wrapper over sentence-transformers: ``encode(texts) -> (N, D)`` float32,
L2-normalized, so a dot product is the cosine similarity. For CLSR it also takes
input embeddings instead of token ids (:meth:`TextEncoder.encode_embeddings`),
pooled the way the model pools, so "text-like" embeddings from speech land in the
same space as the questions.
"""

from __future__ import annotations

import os

import numpy as np
import torch

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

    # -- the differentiable path CLSR uses ---------------------------------------------------

    @property
    def transformer(self) -> torch.nn.Module:
        """The underlying Hugging Face model (BERT-like: accepts ``inputs_embeds``)."""
        return self.model[0].auto_model

    @property
    def word_embeddings(self) -> torch.Tensor:
        """(V, E) input word-embedding matrix, indexed by the tokenizer's ids."""
        return self.transformer.get_input_embeddings().weight

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Tokenizer ids without special tokens (the targets a CLSR decoder predicts)."""
        return self.model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def encode_embeddings(self, embeds: torch.Tensor, n_tokens: torch.Tensor,
                          transformer: torch.nn.Module | None = None) -> torch.Tensor:
        """embeds (B, N, E) word-level input embeddings, n_tokens (B,) -> (B, dim) unit norm.

        [CLS] and [SEP] are added around each row as the tokenizer would, then the
        transformer runs on the embeddings and the result is pooled (mean or CLS, as the
        model's Pooling module says) and normalized. Gradients flow to ``embeds``.
        ``transformer`` replaces the encoder's own (an adapted copy of it, CLSR's
        document side).
        """
        tok = self.model.tokenizer
        b, n, _ = embeds.shape
        table = self.word_embeddings
        cls = table[tok.cls_token_id].to(embeds.dtype)
        sep = table[tok.sep_token_id].to(embeds.dtype)
        pad = table[tok.pad_token_id].to(embeds.dtype)
        length = n_tokens.long() + 2
        pos = torch.arange(n + 2, device=embeds.device)[None]  # (1, N + 2)
        body = torch.cat([embeds.new_zeros(b, 1, embeds.shape[2]), embeds,
                          embeds.new_zeros(b, 1, embeds.shape[2])], dim=1)
        is_cls = (pos == 0)[..., None]
        is_sep = (pos == length[:, None] - 1)[..., None]
        is_pad = (pos >= length[:, None])[..., None]
        x = torch.where(is_cls, cls, torch.where(is_sep, sep, torch.where(is_pad, pad, body)))
        mask = (pos < length[:, None]).long()
        hidden = (transformer or self.transformer)(inputs_embeds=x,
                                                   attention_mask=mask).last_hidden_state
        pooling = self.model[1]
        if getattr(pooling, "pooling_mode_cls_token", False):
            pooled = hidden[:, 0]
        else:
            m = mask[..., None].to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def hidden_states(self, ids: torch.Tensor, n_tokens: torch.Tensor
                      ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """ids (B, N) token ids without special tokens (anything past ``n_tokens`` is
        ignored), n_tokens (B,) -> every layer's states, embeddings first, each
        (B, N + 2, E) with [CLS] and [SEP] around the text, and their mask (B, N + 2)
        True on real positions (what the model's mean pooling averages)."""
        tok = self.model.tokenizer
        b, n = ids.shape
        pos = torch.arange(n + 2, device=ids.device)[None]
        length = n_tokens.long()[:, None] + 2
        body = torch.cat([ids.new_zeros(b, 1), ids.clamp(min=0), ids.new_zeros(b, 1)], dim=1)
        x = torch.where(pos == 0, tok.cls_token_id,
                        torch.where(pos == length - 1, tok.sep_token_id,
                                    torch.where(pos >= length, tok.pad_token_id, body)))
        mask = pos < length
        out = self.transformer(input_ids=x, attention_mask=mask.long(),
                               output_hidden_states=True)
        return list(out.hidden_states), mask
