"""CLSR: the end-to-end contrastive language-speech retriever, as shipped.

End-to-end Contrastive Language-Speech Pretraining Model For Long-form Spoken
Question Answering (Hu et al., 2025), https://arxiv.org/abs/2511.09282
(../shared/papers/000).

    Whisper encoder states (B, S, D_enc)            frozen, cached on disk in training
      -> Whisper's top k blocks + LayerNorm         trained (encoder_layers = k)
      -> groups of state_stride states -> Linear    trained, (B, S', D)
      -> CTC head (models/ctc.py) -> (B, S', 1 + V') trained; V' = kept tokenizer vocabulary
      -> one token per run of the greedy path: its first state's logits (B, N, V')
      -> VQ adaptor (one-hot, straight-through) -> word embeddings (B, N, E)
      -> pretrained text encoder -> (B, E_out)       frozen; gradients pass through it

The paper finds the tokens with Continuous Integrate-and-Fire and a non-autoregressive
decoder (``aligner = "cif"``); that variant, its CE + MAE losses, glancing and the
Whisper-decoder start, live in :mod:`speechrag.research.clsr_cif` and are loaded from
there only for a checkpoint that uses them. The shipped model's CTC head takes the
place of CIF and the decoder, and CTC the place of CE and MAE: (1 - b) CTC + b InfoNCE.

Questions go through the same text encoder as text. A checkpoint holds the config and
only the trained weights (models/trained.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from speechrag.config import strict_config
from speechrag.models.ctc import CtcHead, ctc_loss, greedy_tokens
from speechrag.models.encoder_top import EncoderTop
from speechrag.models.losses import IGNORE, info_nce
from speechrag.models.quantizer import VQAdaptor
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.trained import TrainedModel
from speechrag.models.vocab import respell, spelling_table


@dataclass(frozen=True)
class ClsrConfig:
    """Everything that defines a CLSR model; the defaults are the shipped ``clsr`` but for
    ``encoder_top_scope`` (below). Saved in every checkpoint."""

    whisper: str = "whisper-base"
    text_encoder: str = "all-MiniLM-L6-v2"
    d_encoder: int = 512  # width of the Whisper states (384 tiny, 512 base)
    d_model: int = 256  # width of the aligner (the projected states)
    # Whisper gives 50 states/s; grouping every 6 gives ~8/s, still more than the
    # ~3 tokens/s of speech that CTC needs. "stack" concatenates a group and projects it
    # (the order inside a group is kept); "mean" projects each state and averages.
    state_stride: int = 6
    state_pooling: str = "stack"
    # Absolute-time sinusoids added to the projected states (zero on padding).
    time_encoding: bool = False
    # What finds the tokens in the speech: "ctc" (the shipped head, this file) or "cif"
    # (the paper's integrate-and-fire + NAR decoder: speechrag.research.clsr_cif, whose
    # own settings are ``cif``).
    aligner: str = "ctc"
    # The CTC head (models/ctc.py): residual convolution blocks (Conformer's module;
    # depthwise kernel in states, odd) for context between neighbouring states, then
    # residual feed-forward blocks, before its output layer.
    ctc_conv_blocks: int = 2
    ctc_conv_kernel: int = 9
    ctc_blocks: int = 1
    # Output vocabulary: the text tokenizer's tokens seen at least this often in the
    # WikiSpoken train split (0: all of them); the rest map to [UNK]. The kept ids are
    # saved in the checkpoint.
    vocab_min_count: int = 10
    # A transcript token outside the kept vocabulary becomes, as a training target,
    # "unk": [UNK] (it can never be emitted), or "spell": its spelling in kept WordPiece
    # pieces ("sumatra" -> "sum ##at ##ra", models/vocab.py), so rare words, which are
    # what questions ask about, stay reachable.
    rare_tokens: str = "spell"
    # The VQ adaptor (CLSR's ablation: R@1 42.52 with it, 15.29 without). False feeds the
    # text encoder the soft mixture softmax(logits / T) @ E instead of the argmax token.
    vq: bool = True
    vq_temperature: float = 0.1
    loss_b: float = 1 / 3  # weight of the contrastive NLL
    nce_temperature: float = 0.05
    # Whisper's last blocks trained with the model (0: the whole encoder frozen); they
    # start from Whisper's weights (models/encoder_top.py).
    encoder_layers: int = 2
    # Where those blocks attend (models/encoder_top.py): "segment", the whole window;
    # "piece", each 20 s Whisper piece (indexing runs them once a piece: the shipped CLSR).
    # The default stays "segment" so a checkpoint saved before the field loads as trained.
    encoder_top_scope: str = "segment"
    # Rank of the experimental document adapter (research/lora.py): low-rank updates on
    # a copy of the text encoder that embeds indexed speech only (``speechrag train
    # --arch clsr-adapter``); questions keep the frozen encoder. 0: none.
    doc_adapter_rank: int = 0
    # aligner "cif" only: the paper's CIF and decoder settings
    # (speechrag.research.clsr_cif.CifConfig, as a dict; None: its defaults).
    cif: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClsrConfig:
        """Unknown keys and values no model can use are errors naming the setting."""
        config = strict_config(cls, dict(values), "CLSR config")
        choices = {"aligner": ("ctc", "cif"), "state_pooling": ("mean", "stack"),
                   "rare_tokens": ("unk", "spell"),
                   "encoder_top_scope": ("segment", "piece")}
        for name, allowed in choices.items():
            if getattr(config, name) not in allowed:
                raise ValueError(f"CLSR config: {name} must be one of {allowed}, not "
                                 f"{getattr(config, name)!r}")
        if config.doc_adapter_rank < 0:
            raise ValueError(f"CLSR config: doc_adapter_rank must be 0 or more, not "
                             f"{config.doc_adapter_rank}")
        if config.ctc_conv_kernel < 1 or config.ctc_conv_kernel % 2 == 0:
            raise ValueError(f"CLSR config: ctc_conv_kernel must be odd and positive, not "
                             f"{config.ctc_conv_kernel}")
        if config.aligner == "cif":  # the research variant checks and fills its own part
            from speechrag.research.clsr_cif import checked_cif_config

            return checked_cif_config(config)
        if config.cif is not None:
            raise ValueError("CLSR config: cif settings need aligner 'cif'")
        return config


class ClsrModel(TrainedModel):
    """The trained parts (Whisper's top blocks, projection, CTC head) around a frozen
    text encoder. Build one with :meth:`build`, which picks the CIF variant's class when
    the config asks for it."""

    arch: ClassVar[str] = "clsr"
    config_cls: ClassVar[type] = ClsrConfig
    # weights rebuilt from the text encoder at load time (never saved)
    frozen_prefixes: ClassVar[tuple[str, ...]] = ("text_model.", "vq.word_embeddings",
                                                  "ctc.word_embeddings")

    def __init__(self, config: ClsrConfig, text: TextEncoder,
                 vocab_ids: torch.Tensor | None = None) -> None:
        """vocab_ids (V',) sorted tokenizer ids the model may emit (None: all)."""
        super().__init__(text)
        self.config = config
        full = text.word_embeddings.detach()
        if vocab_ids is None:
            vocab_ids = torch.arange(full.shape[0])
        unk = text.model.tokenizer.unk_token_id
        vocab_ids = torch.unique(torch.cat([vocab_ids.long(), torch.tensor([unk])]))
        self.register_buffer("vocab_ids", vocab_ids)  # local index -> tokenizer id
        to_local = torch.full((full.shape[0],), int((vocab_ids == unk).nonzero()))
        to_local[vocab_ids] = torch.arange(len(vocab_ids))
        self.register_buffer("to_local", to_local, persistent=False)  # tokenizer id -> local
        self._spelling: dict[int, list[int]] | None = None  # rare_tokens = "spell"
        words = full[vocab_ids]
        d = config.d_model
        stacked = config.state_stride if config.state_pooling == "stack" else 1
        self.proj = nn.Linear(stacked * config.d_encoder, d)
        self.ctc = (CtcHead(d, words, config.ctc_blocks, config.ctc_conv_blocks,
                            config.ctc_conv_kernel) if config.aligner == "ctc" else None)
        self.vq = VQAdaptor(words, config.vq_temperature)
        self.register_buffer("time_table", sinusoids(4096, d) if config.time_encoding
                             else torch.zeros(1, d), persistent=False)
        self.encoder_top = (EncoderTop(config.whisper, config.encoder_layers,
                                       config.encoder_top_scope)
                            if config.encoder_layers else None)
        self.doc_encoder: nn.Module | None = None
        if config.doc_adapter_rank:  # experimental: only a model that has one loads it
            from speechrag.research.lora import adapted_copy

            self.doc_encoder = adapted_copy(text.transformer, config.doc_adapter_rank)

    @classmethod
    def build(cls, config: ClsrConfig, text: TextEncoder,
              state: dict[str, torch.Tensor] | None = None) -> ClsrModel:
        """The model a config describes (the CIF variant for ``aligner = "cif"``), with
        the vocabulary a checkpoint's ``state`` keeps."""
        vocab_ids = (state or {}).get("vocab_ids")
        if config.aligner == "cif" and cls is ClsrModel:
            from speechrag.research.clsr_cif import ClsrCifModel

            return ClsrCifModel(config, text, vocab_ids)
        return cls(config, text, vocab_ids)

    def project(self, states: torch.Tensor, state_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whisper states (B, S, D_enc), mask (B, S) -> (B, S', D), (B, S') with
        S' = ceil(S / state_stride), through Whisper's trained top blocks when the model
        has them: each group of states concatenated in order, padding as zeros, and
        projected ("stack"), or projected and averaged over its real states ("mean";
        padding does not dilute a group). A group is real when any of its states is."""
        if self.encoder_top is not None:
            states = self.encoder_top(states, state_mask)
        k = self.config.state_stride
        if k == 1:
            return self.proj(states) * state_mask[..., None], state_mask
        pad = (-states.shape[1]) % k
        m = F.pad(state_mask, (0, pad))
        b, s = m.shape
        real = m.view(b, s // k, k).any(2)
        if self.config.state_pooling == "stack":
            x = F.pad(states * state_mask[..., None], (0, 0, 0, pad))
            return self.proj(x.reshape(b, s // k, -1)) * real[..., None], real
        h = F.pad(self.proj(states) * state_mask[..., None], (0, 0, 0, pad))
        total = h.view(b, s // k, k, -1).sum(2)
        count = m.view(b, s // k, k).sum(2).to(h.dtype)
        return total / count.clamp(min=1)[..., None], real

    def timed(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, S', D) -> the same plus absolute-time sinusoids (zero on padding)."""
        if not self.config.time_encoding:
            return h
        n = h.shape[1]
        table = self.time_table if n <= len(self.time_table) else sinusoids(n, h.shape[2])
        return h + table[:n].to(h)[None] * mask[..., None].to(h.dtype)

    def ctc_frames(self, states: torch.Tensor, state_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The CTC head over Whisper states (B, S, D_enc), mask (B, S): logits
        (B, S', 1 + V') (class 0 the blank, local token i class i + 1) and their mask."""
        h, state_mask = self.project(states, state_mask)
        assert self.ctc is not None
        return self.ctc(self.timed(h, state_mask), state_mask), state_mask

    def aligned(self, states: torch.Tensor, state_mask: torch.Tensor,
                target_lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The aligner: logits (B, N, V') of the first state of each run of the greedy
        CTC path, n_tokens (B,), and the head's ctc_logits (B, S', 1 + V') with their
        state_mask (B, S'). (``target_lengths`` is the CIF variant's.)"""
        frames, state_mask = self.ctc_frames(states, state_mask)
        # room for [CLS] and [SEP] in the text encoder's positions
        limit = self.text.transformer.config.max_position_embeddings - 2
        first, n_tokens = greedy_tokens(frames.detach(), state_mask, limit)
        logits = frames[:, :, 1:].gather(1, first[..., None].expand(-1, -1,
                                                                     frames.shape[2] - 1))
        return {"logits": logits, "n_tokens": n_tokens, "ctc_logits": frames,
                "state_mask": state_mask}

    def forward(self, states: torch.Tensor, state_mask: torch.Tensor,
                target_lengths: torch.Tensor | None = None, document: bool = True
                ) -> dict[str, torch.Tensor]:
        """states (B, S, D_enc), state_mask (B, S) True on real states. ``document``
        False embeds the speech as a question (a spoken query): through the frozen text
        encoder even when the model has a document adapter.

        -> logits (B, N, V') over the local vocabulary, n_tokens (B,), token_ids (B, N)
        tokenizer ids, speech_emb (B, E_out) unit norm, and the aligner's own outputs.
        """
        out = self.aligned(states, state_mask, target_lengths)
        embeds, local = self.vq(out["logits"])
        if not self.config.vq:  # ablation: the soft token mixture, no argmax
            p = F.softmax(out["logits"] / self.config.vq_temperature, dim=-1)
            embeds = p @ self.vq.word_embeddings.to(p.dtype)
        out["token_ids"] = self.vocab_ids[local]
        out["speech_emb"] = self.text.encode_embeddings(
            embeds, out["n_tokens"], self.doc_encoder if document else None)
        return out

    def transcripts(self, out: dict[str, torch.Tensor]) -> list[str]:
        """A forward pass's token_ids (B, N) and n_tokens (B,) -> B rough transcripts."""
        tok = self.text.model.tokenizer
        return [tok.decode(ids[:n].tolist(), skip_special_tokens=True)
                for ids, n in zip(out["token_ids"], out["n_tokens"], strict=True)]

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """texts -> (N, E_out) unit norm: the text encoder's own sentence embedding, the
        space the speech embeddings are trained into (CLSR's question side)."""
        return torch.from_numpy(self.text.encode(texts))

    def embed_documents(self, token_ids: torch.Tensor, n_tokens: torch.Tensor
                        ) -> torch.Tensor:
        """token_ids (B, N) tokenizer ids of what the model heard, n_tokens (B,) ->
        (B, E_out) unit norm: the speech side's embedding of those tokens as a document,
        exactly as :meth:`forward` embeds its argmax tokens (the adapter's training input)."""
        embeds = self.text.word_embeddings[token_ids.clamp(min=0)]
        return self.text.encode_embeddings(embeds, n_tokens, self.doc_encoder)

    # -- training -------------------------------------------------------------------------

    @torch.no_grad()
    def query_embeddings(self, query_ids: torch.Tensor, query_lengths: torch.Tensor
                         ) -> torch.Tensor:
        """The paired questions (B, Q) token ids -> (B, E_out), through the frozen text
        encoder."""
        return self.text.encode_embeddings(
            self.text.word_embeddings[query_ids.clamp(min=0)], query_lengths)

    def local_targets(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transcript targets (B, N) tokenizer ids (IGNORE on padding) -> the targets as
        trained (rare tokens spelled when ``rare_tokens = "spell"``) and the same as
        local ids in the kept vocabulary."""
        if self.config.rare_tokens == "spell":
            targets = self._spelled(targets)
        local = torch.where(targets == IGNORE, targets, self.to_local[targets.clamp(min=0)])
        return targets, local

    def training_loss(self, states: torch.Tensor, state_mask: torch.Tensor,
                      targets: torch.Tensor, query_ids: torch.Tensor,
                      query_lengths: torch.Tensor, contrastive: bool = True
                      ) -> dict[str, torch.Tensor]:
        """targets (B, N) token ids of the transcript, IGNORE on padding; query_ids (B, Q)
        and query_lengths (B,): the paired questions (row i answers with audio i).

        CTC alone in ASR pretraining (``contrastive=False``: no greedy path, no text
        encoder), (1 - b) CTC + b InfoNCE after."""
        _, local = self.local_targets(targets)
        if contrastive:
            out = self(states, state_mask)
            nll = info_nce(self.query_embeddings(query_ids, query_lengths),
                           out["speech_emb"], self.config.nce_temperature)
            frames, mask = out["ctc_logits"], out["state_mask"]
        else:
            frames, mask = self.ctc_frames(states, state_mask)
            nll = states.new_zeros(())
        ctc = ctc_loss(frames, mask, local, IGNORE)
        b = self.config.loss_b if contrastive else 0.0
        return {"loss": (1 - b) * ctc + b * nll, "ctc": ctc, "nll": nll}

    def _spelled(self, targets: torch.Tensor) -> torch.Tensor:
        """targets (B, N) tokenizer ids, IGNORE on padding -> (B, N') the same with each
        token outside the kept vocabulary written in kept pieces (``rare_tokens``)."""
        if self._spelling is None:  # built on first use: inference never needs it
            self._spelling = spelling_table(self.text.model.tokenizer,
                                            self.vocab_ids.tolist())
        rows = [respell([i for i in row if i != IGNORE], self._spelling)
                for row in targets.tolist()]
        n = max(1, max(map(len, rows)))
        return torch.tensor([r + [IGNORE] * (n - len(r)) for r in rows], device=targets.device)

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes: the frozen text encoder and the word-embedding
        copies are rebuilt from their assets at load time; of the document adapter's
        copy of the text encoder, only its low-rank updates."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith(self.frozen_prefixes)
                and (not k.startswith("doc_encoder.") or k.endswith((".lora_a", ".lora_b")))}


def sinusoids(length: int, channels: int) -> torch.Tensor:
    """(length, channels) sine/cosine table over positions (Transformer / Whisper style)."""
    half = channels // 2
    inv = torch.exp(-torch.log(torch.tensor(10_000.0)) * torch.arange(half) / max(1, half - 1))
    t = torch.arange(length)[:, None] * inv[None]
    table = torch.cat([torch.sin(t), torch.cos(t)], dim=1)
    return F.pad(table, (0, channels - table.shape[1]))
