"""CLSR: the end-to-end contrastive language-speech retriever, assembled.

End-to-end Contrastive Language-Speech Pretraining Model For Long-form Spoken
Question Answering (Hu et al., 2025), https://arxiv.org/abs/2511.09282
(../shared/papers/000).

    Whisper encoder states (B, S, D_enc)            frozen, cached on disk in training
      (-> Whisper's top k blocks + LayerNorm        trained, with encoder_layers = k)
      -> Linear to D                                 trained
      -> CIF (alphas, integrate-and-fire) (B, N, D)  trained
      -> NAR decoder -> logits (B, N, V)             trained; V = text tokenizer's vocabulary
      -> VQ adaptor (one-hot, straight-through) -> word embeddings (B, N, E)
      -> pretrained text encoder -> (B, E_out)       frozen; gradients pass through it

With ``aligner = "ctc"`` a CTC head (models/ctc.py) takes the place of CIF and the
decoder: each run of its greedy path is a token, with the logits of its first state,
and CTC takes the place of CE and MAE in the loss.

Questions go through the same text encoder as text. Loss (CLSR's L_total):
(1 - a - b) CE + a |sum(alpha) - N| + b InfoNCE. A checkpoint holds the config and
only the trained weights; the pretrained parts are named by asset and checksum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechrag.alignment import AlignmentConfig, alignment_loss
from speechrag.losses import ClsrLoss, info_nce, quantity_loss
from speechrag.models.cif import CifPredictor
from speechrag.models.ctc import CtcHead, ctc_loss, greedy_tokens
from speechrag.models.encoder_top import EncoderTop
from speechrag.models.frozen_text import (
    FrozenTextModel,
    read_checkpoint,
    strict_config,
    tensor_digest,
)
from speechrag.models.glancing import glancing_mask
from speechrag.models.lora import adapted_copy, is_lora_weight
from speechrag.models.nar_decoder import NarDecoder, NarDecoderConfig
from speechrag.models.quantizer import VQAdaptor
from speechrag.text_encoder import TextEncoder
from speechrag.vocab import respell, spelling_table

CHECKPOINT_FORMAT = 1
IGNORE = -100  # target id on padding


@dataclass(frozen=True)
class ClsrConfig:
    """Everything that defines a CLSR model. Saved in every checkpoint."""

    whisper: str = "whisper-base"
    text_encoder: str = "all-MiniLM-L6-v2"
    d_encoder: int = 512  # width of the Whisper states (384 tiny, 512 base)
    # Whisper gives 50 states/s; averaging every 3 gives ~17/s, Paraformer's rate. The
    # decoder's cross-attention projects every state in every layer: on 2 CPU cores a
    # stage-1 step (16 utterances up to 50 s) took 7.2 s with stride 1.
    state_stride: int = 3
    # How each group of state_stride states becomes one: "mean" (project each state,
    # average the group) or "stack" (concatenate the group, then project: the same
    # multiply-adds, but the order of the states inside a group is kept).
    state_pooling: str = "mean"
    decoder: NarDecoderConfig = field(default_factory=NarDecoderConfig)
    cif_bias_init: float = -2.5
    tail_threshold: float = 0.5
    # Absolute-time sinusoids added before CIF: firing depends on where in the
    # utterance a state is (a CPU probe saw dev WER fall faster with it).
    time_encoding: bool = True
    # Auxiliary CE of each CIF embedding on its own token (through the decoder's output
    # layer): supervises the alignment directly instead of only through the decoder.
    cif_ce_weight: float = 0.5
    # Glancing sampler (Paraformer's GLM, models/glancing.py) in ASR pretraining: reveal
    # floor(ratio x errors) target tokens to a second decoder pass. 0 turns it off;
    # Paraformer uses 0.75. Stage 2 and inference decode in one plain pass.
    glancing_ratio: float = 0.0
    # CTC on the projected encoder states (before CIF), through the decoder's tied output
    # layer plus a blank: supervises which states carry which token, the alignment CIF
    # has to find on its own (the feasibility probe's main lever). 0 turns it off.
    ctc_weight: float = 0.0
    # What finds the tokens in the speech. "cif" (the paper's): integrate-and-fire, then
    # the NAR decoder. "ctc": a CTC head on the averaged states (models/ctc.py; no CIF,
    # no decoder): each run of its greedy path is a token, whose logits go on to the VQ
    # adaptor; the loss is (1 - b) CTC + b InfoNCE (CTC in place of CE and MAE).
    aligner: str = "cif"
    # Residual feed-forward blocks in the CTC aligner's head before its output layer
    # (models/ctc.py; 0: the head is linear).
    ctc_blocks: int = 0
    # Residual convolution blocks (Conformer's convolution module) in the CTC head
    # before the feed-forward ones, and their depthwise kernel in states (odd; 9 at
    # stride 6 sees 0.5 s either side): context between neighbouring states.
    ctc_conv_blocks: int = 0
    ctc_conv_kernel: int = 9
    # Output vocabulary: the text tokenizer's tokens seen at least this often in the
    # WikiSpoken train split (0: all of them). 2 keeps 18,043 of 30,522 ids and 98.6% of
    # test-split tokens; the rest map to [UNK]. The ids are saved in the checkpoint.
    vocab_min_count: int = 2
    # A transcript token outside the kept vocabulary becomes, as a training target,
    # "unk": [UNK] (it can never be emitted), or "spell": its spelling in kept WordPiece
    # pieces ("sumatra" -> "sum ##at ##ra", speechrag.vocab), so rare words, which are
    # what questions ask about, stay reachable.
    rare_tokens: str = "unk"
    # The VQ adaptor (CLSR's ablation: R@1 42.52 with it, 15.29 without). False feeds the
    # text encoder the soft mixture softmax(logits / T) @ E instead of the argmax token.
    vq: bool = True
    # Optional alignment loss (paper 001) between the speech side's token-level states
    # (layer 0: CIF embeddings, layer 1: decoder states, both mapped to the text width)
    # and the text encoder's states of the transcript; weight 0 turns it off.
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    align_weight: float = 0.0
    vq_temperature: float = 0.1
    loss_a: float = 1 / 3  # CIF quantity (MAE)
    loss_b: float = 1 / 3  # contrastive NLL
    nce_temperature: float = 0.05
    # Whisper's last blocks trained with the model (0: the whole encoder frozen); they
    # start from Whisper's weights (models/encoder_top.py)
    encoder_layers: int = 0
    # Rank of the document adapter (models/lora.py): low-rank updates on a copy of the
    # text encoder that embeds what the model heard in indexed speech, trained to place
    # its rough transcripts near their questions (``speechrag train --arch clsr-adapter``).
    # Questions, written or spoken, keep the frozen encoder, so the question side is the
    # cascade's. 0: no adapter (the paper's frozen text encoder for both).
    doc_adapter_rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClsrConfig:
        """Unknown keys are an error (a misspelled setting must not pass silently)."""
        values = dict(values)
        if isinstance(values.get("decoder"), dict):
            values["decoder"] = strict_config(NarDecoderConfig, values["decoder"],
                                              "CLSR decoder config")
        if isinstance(values.get("alignment"), dict):
            values["alignment"] = strict_config(AlignmentConfig, values["alignment"],
                                                "CLSR alignment config")
        config = strict_config(cls, values, "CLSR config")
        if config.decoder.init not in ("", "whisper"):
            raise ValueError(f"CLSR decoder config: init must be '' or 'whisper', not "
                             f"{config.decoder.init!r}")
        if config.aligner not in ("cif", "ctc"):
            raise ValueError(f"CLSR config: aligner must be 'cif' or 'ctc', not "
                             f"{config.aligner!r}")
        if config.state_pooling not in ("mean", "stack"):
            raise ValueError(f"CLSR config: state_pooling must be 'mean' or 'stack', not "
                             f"{config.state_pooling!r}")
        if config.rare_tokens not in ("unk", "spell"):
            raise ValueError(f"CLSR config: rare_tokens must be 'unk' or 'spell', not "
                             f"{config.rare_tokens!r}")
        if (config.ctc_blocks or config.ctc_conv_blocks) and config.aligner != "ctc":
            raise ValueError("CLSR config: ctc_blocks and ctc_conv_blocks need aligner 'ctc'")
        if config.doc_adapter_rank < 0:
            raise ValueError(f"CLSR config: doc_adapter_rank must be 0 or more, not "
                             f"{config.doc_adapter_rank}")
        if config.ctc_conv_kernel < 1 or config.ctc_conv_kernel % 2 == 0:
            raise ValueError(f"CLSR config: ctc_conv_kernel must be odd and positive, not "
                             f"{config.ctc_conv_kernel}")
        if config.aligner == "ctc":
            # settings of parts the CTC aligner does not have
            cif_only = {"glancing_ratio": config.glancing_ratio > 0,
                        "ctc_weight": config.ctc_weight > 0,
                        "align_weight": config.align_weight > 0,
                        "decoder.init": config.decoder.init != ""}
            bad = [k for k, on in cif_only.items() if on]
            if bad:
                raise ValueError(f"CLSR config: aligner 'ctc' has no CIF or decoder, so "
                                 f"{', '.join(bad)} cannot be set")
        return config


class ClsrModel(FrozenTextModel):
    """The trained parts (projection, CIF, decoder) around a frozen text encoder."""

    def __init__(self, config: ClsrConfig, text: TextEncoder,
                 vocab_ids: torch.Tensor | None = None) -> None:
        """vocab_ids (V',) sorted tokenizer ids the decoder may emit (None: all)."""
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
        d = config.decoder.d_model
        stacked = config.state_stride if config.state_pooling == "stack" else 1
        self.proj = nn.Linear(stacked * config.d_encoder, d)
        self.ctc = (CtcHead(d, words, config.ctc_blocks, config.ctc_conv_blocks,
                            config.ctc_conv_kernel) if config.aligner == "ctc" else None)
        if self.ctc is None:
            self.cif = CifPredictor(d, bias_init=config.cif_bias_init,
                                    tail_threshold=config.tail_threshold)
            self.decoder = NarDecoder(config.decoder, d_encoder=d, word_embeddings=words)
        self.vq = VQAdaptor(words, config.vq_temperature)
        self.align_proj = nn.Linear(d, text.dim) if config.align_weight > 0 else None
        # target tokens shown by the glancing sampler: word embedding (E) -> decoder width
        self.glance_proj = nn.Linear(text.dim, d) if config.glancing_ratio > 0 else None
        self.ctc_blank = nn.Linear(d, 1) if config.ctc_weight > 0 else None  # blank logit
        self.register_buffer("time_table", _sinusoids(4096, d) if config.time_encoding
                             else torch.zeros(1, d), persistent=False)
        self.encoder_top = (EncoderTop(config.whisper, config.encoder_layers)
                            if config.encoder_layers else None)
        self.loss = ClsrLoss(config.loss_a, config.loss_b, config.nce_temperature, IGNORE)
        # documents' copy of the text encoder, with trainable low-rank updates
        self.doc_encoder = (adapted_copy(text.transformer, config.doc_adapter_rank)
                            if config.doc_adapter_rank else None)

    @torch.no_grad()
    def init_decoder_from_whisper(self) -> None:
        """Start the decoder from Whisper's own (``decoder.init = "whisper"``; the training
        app calls this for a run from scratch): its first n_layer blocks, final LayerNorm
        and position table, and the state projection as the identity, so the
        cross-attention reads the (pooled) Whisper states it was trained on. Raises a
        ValueError naming the setting when the decoder's shape is not Whisper's."""
        from speechrag.models.whisper_decoder import (
            decoder_dims,
            read_whisper_decoder,
            transformer_decoder_state,
        )

        w = read_whisper_decoder(self.config.whisper)
        d, heads, _ = decoder_dims(w)
        c = self.config.decoder
        want = {"d_model": d, "n_head": heads, "d_ff": 4 * d}
        wrong = {k: v for k, v in want.items() if getattr(c, k) != v}
        if wrong or self.config.d_encoder != d:
            raise ValueError(f"decoder init 'whisper': {self.config.whisper}'s decoder has "
                             f"d_model {d}, n_head {heads}, d_ff {4 * d} and reads states of "
                             f"width {d}; the config has "
                             + ", ".join(f"{k} {getattr(c, k)}" for k in want)
                             + f", d_encoder {self.config.d_encoder}")
        self.decoder.layers.load_state_dict(transformer_decoder_state(w, c.n_layer))
        table = w["position_encodings/encodings"]
        n = min(len(table), c.max_tokens)
        self.decoder.positions.weight[:n] = table[:n]
        self.proj.weight.copy_(torch.eye(d))
        self.proj.bias.zero_()

    def pretrained_decoder_prefixes(self) -> tuple[str, ...]:
        """Names of the weights ``init_decoder_from_whisper`` fills (the blocks, their
        final norm, the positions), which train at ``decoder_lr_scale``; none unless the
        config starts the decoder from Whisper's."""
        if self.config.decoder.init != "whisper":
            return ()
        return ("decoder.layers.", "decoder.positions.")

    def _project(self, states: torch.Tensor, state_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, D_enc), (B, S) -> (B, S', D), (B, S') with S' = ceil(S / state_stride):
        each group of states projected and averaged over its real states ("mean";
        padding does not dilute a group), or concatenated in order, padding as zeros,
        and projected ("stack"). A group is real when any of its states is."""
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

    def _timed(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, S', D) -> the same plus absolute-time sinusoids (zero on padding)."""
        if not self.config.time_encoding:
            return h
        n = h.shape[1]
        table = self.time_table if n <= len(self.time_table) else _sinusoids(n, h.shape[2])
        return h + table[:n].to(h)[None] * mask[..., None].to(h.dtype)

    def _decode(self, states: torch.Tensor, state_mask: torch.Tensor,
                target_lengths: torch.Tensor | None, glance_targets: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Projection, CIF and decoder: logits (B, N, V') over the local vocabulary.

        glance_targets (B, N) local target ids (IGNORE on padding), in training with the
        glancing sampler on: the logits are the second pass's; "glanced" (B, N) marks the
        revealed positions and "free_ids" (B, N) holds the first, plain pass's argmax.
        With ``encoder_layers`` = k, states are Whisper's below its last k blocks."""
        if self.encoder_top is not None:
            states = self.encoder_top(states, state_mask)
        h, state_mask = self._project(states, state_mask)
        tokens, n_tokens, alphas = self.cif(self._timed(h, state_mask), state_mask,
                                            target_lengths)
        extra: dict[str, torch.Tensor] = {}
        inputs = tokens
        if glance_targets is not None and self.glance_proj is not None and self.training:
            with torch.no_grad():
                free = self.decoder.output_from_hidden(
                    self.decoder.hidden(tokens, n_tokens, h, state_mask)).argmax(-1)
            glanced = glancing_mask(free, glance_targets, self.config.glancing_ratio, IGNORE)
            shown = self.glance_proj(self.vq.word_embeddings[glance_targets.clamp(min=0)])
            inputs = torch.where(glanced[..., None], shown.to(tokens.dtype), tokens)
            extra = {"glanced": glanced, "free_ids": free}
        hidden = self.decoder.hidden(inputs, n_tokens, h, state_mask)
        return {"logits": self.decoder.output_from_hidden(hidden), "n_tokens": n_tokens,
                "alphas": alphas, "cif_tokens": tokens, "decoder_states": hidden,
                "states": h, "state_mask": state_mask, **extra}

    def _ctc_frames(self, states: torch.Tensor, state_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The CTC aligner's head: logits (B, S', 1 + V') and their state mask (B, S')."""
        if self.encoder_top is not None:
            states = self.encoder_top(states, state_mask)
        h, state_mask = self._project(states, state_mask)
        assert self.ctc is not None
        return self.ctc(self._timed(h, state_mask), state_mask), state_mask

    def _ctc_decode(self, states: torch.Tensor, state_mask: torch.Tensor
                    ) -> dict[str, torch.Tensor]:
        """The CTC aligner: logits (B, N, V') of the first state of each run of the greedy
        path, n_tokens (B,), and the head's ctc_logits (B, S', 1 + V') with their
        state_mask (B, S')."""
        frames, state_mask = self._ctc_frames(states, state_mask)
        # room for [CLS] and [SEP] in the text encoder's positions
        limit = self.text.transformer.config.max_position_embeddings - 2
        first, n_tokens = greedy_tokens(frames.detach(), state_mask, limit)
        logits = frames[:, :, 1:].gather(1, first[..., None].expand(-1, -1,
                                                                     frames.shape[2] - 1))
        return {"logits": logits, "n_tokens": n_tokens, "ctc_logits": frames,
                "state_mask": state_mask}

    @torch.no_grad()
    def _query_embeddings(self, query_ids: torch.Tensor, query_lengths: torch.Tensor
                          ) -> torch.Tensor:
        """The paired questions (B, Q) token ids -> (B, E_out), through the frozen text
        encoder."""
        return self.text.encode_embeddings(
            self.text.word_embeddings[query_ids.clamp(min=0)], query_lengths)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """texts -> (N, E_out) unit norm: the text encoder's own sentence embedding, the
        space the speech embeddings are trained into (CLSR's question side)."""
        return torch.from_numpy(self.text.encode(texts))

    def ctc_loss(self, states: torch.Tensor, state_mask: torch.Tensor, local: torch.Tensor
                 ) -> torch.Tensor:
        """CTC of the projected states (B, S', D), mask (B, S'), against the local target
        ids (B, N) (IGNORE on padding); class 0 is the blank, token i is class i + 1.
        Mean over the batch of the per-utterance loss divided by its target length."""
        assert self.ctc_blank is not None
        logits = torch.cat([self.ctc_blank(states), self.decoder.output(states)], dim=-1)
        return ctc_loss(logits, state_mask, local, IGNORE)

    def forward(self, states: torch.Tensor, state_mask: torch.Tensor,
                target_lengths: torch.Tensor | None = None, document: bool = True
                ) -> dict[str, torch.Tensor]:
        """states (B, S, D_enc), state_mask (B, S) True on real states; target_lengths (B,)
        in training (CIF fires exactly that many tokens) or None (CIF counts). ``document``
        False embeds the speech as a question (a spoken query): through the frozen text
        encoder even when the model has a document adapter.

        -> logits (B, N, V') over the local vocabulary, n_tokens (B,), alphas (B, S')
        raw, cif_tokens (B, N, D), token_ids (B, N) tokenizer ids, speech_emb (B, E_out)
        unit norm.
        """
        out = (self._ctc_decode(states, state_mask) if self.ctc is not None
               else self._decode(states, state_mask, target_lengths))
        embeds, local = self.vq(out["logits"])
        if not self.config.vq:  # ablation: the soft token mixture, no argmax
            p = F.softmax(out["logits"] / self.config.vq_temperature, dim=-1)
            embeds = p @ self.vq.word_embeddings.to(p.dtype)
        out["token_ids"] = self.vocab_ids[local]
        out["speech_emb"] = self.text.encode_embeddings(
            embeds, out["n_tokens"], self.doc_encoder if document else None)
        return out

    def embed_documents(self, token_ids: torch.Tensor, n_tokens: torch.Tensor
                        ) -> torch.Tensor:
        """token_ids (B, N) tokenizer ids of what the model heard, n_tokens (B,) ->
        (B, E_out) unit norm: the speech side's embedding of those tokens as a document,
        exactly as :meth:`forward` embeds its argmax tokens (the adapter's training input)."""
        embeds = self.text.word_embeddings[token_ids.clamp(min=0)]
        return self.text.encode_embeddings(embeds, n_tokens, self.doc_encoder)

    def training_loss(self, states: torch.Tensor, state_mask: torch.Tensor,
                      targets: torch.Tensor, query_ids: torch.Tensor,
                      query_lengths: torch.Tensor, contrastive: bool = True
                      ) -> dict[str, torch.Tensor]:
        """targets (B, N) token ids of the transcript, IGNORE on padding; query_ids (B, Q)
        and query_lengths (B,): the paired questions (row i answers with audio i).

        With ``contrastive=False`` (ASR pretraining) the text encoder is skipped: "loss"
        is (1 - a) CE + a MAE and "nll" is zero.
        """
        if self.config.rare_tokens == "spell":
            targets = self._spelled(targets)
        lengths = (targets != IGNORE).sum(dim=1)
        local = torch.where(targets == IGNORE, targets, self.to_local[targets.clamp(min=0)])
        if self.ctc is not None:
            return self._ctc_training_loss(states, state_mask, local, query_ids,
                                           query_lengths, contrastive)
        if not contrastive:
            out = self._decode(states, state_mask, lengths, glance_targets=local)
            # with the glancing sampler, CE scores only the positions not revealed
            scored = local if "glanced" not in out else local.masked_fill(out["glanced"],
                                                                          IGNORE)
            ce = F.cross_entropy(out["logits"].transpose(1, 2), scored, ignore_index=IGNORE)
            mae = quantity_loss(out["alphas"], lengths)
            a = self.config.loss_a
            parts = {"loss": (1 - a) * ce + a * mae, "ce": ce, "mae": mae,
                     "nll": ce.new_zeros(())}
            # accuracy of the plain pass (the glancing sampler's first pass when it is on)
            free = out["free_ids"] if "free_ids" in out else out["logits"].argmax(-1)
            out["token_ids"] = self.vocab_ids[free]
            if "glanced" in out:
                parts["glanced"] = out["glanced"].sum() / lengths.sum().clamp(min=1)
        else:
            out = self(states, state_mask, lengths)
            parts = self.loss(out["logits"], local, out["alphas"], lengths,
                              self._query_embeddings(query_ids, query_lengths),
                              out["speech_emb"])
        if self.config.cif_ce_weight > 0:
            cif_logits = self.decoder.output(out["cif_tokens"])
            parts["cif_ce"] = F.cross_entropy(cif_logits.transpose(1, 2), local,
                                              ignore_index=IGNORE)
            parts["loss"] = parts["loss"] + self.config.cif_ce_weight * parts["cif_ce"]
        if self.ctc_blank is not None:
            parts["ctc"] = self.ctc_loss(out["states"], out["state_mask"], local)
            parts["loss"] = parts["loss"] + self.config.ctc_weight * parts["ctc"]
        if self.align_proj is not None:
            with torch.no_grad():
                text_layers, text_mask = self.text.hidden_states(targets, lengths)
            speech = [self.align_proj(out["cif_tokens"]),
                      self.align_proj(out["decoder_states"])]
            n = speech[0].shape[1]
            mask = torch.arange(n, device=targets.device)[None] < out["n_tokens"][:, None]
            parts["align"] = alignment_loss(self.config.alignment, speech, mask, text_layers,
                                            text_mask)
            parts["loss"] = parts["loss"] + self.config.align_weight * parts["align"]
        correct = (out["token_ids"] == targets) & (targets != IGNORE)
        parts["token_acc"] = correct.sum() / lengths.sum().clamp(min=1)
        return parts

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

    def _ctc_training_loss(self, states: torch.Tensor, state_mask: torch.Tensor,
                           local: torch.Tensor, query_ids: torch.Tensor,
                           query_lengths: torch.Tensor, contrastive: bool
                           ) -> dict[str, torch.Tensor]:
        """The CTC aligner's loss: CTC alone in ASR pretraining, (1 - b) CTC + b InfoNCE
        after; local (B, N) target ids in the kept vocabulary (IGNORE on padding)."""
        if contrastive:
            out = self(states, state_mask)
            nll = info_nce(self._query_embeddings(query_ids, query_lengths),
                           out["speech_emb"], self.config.nce_temperature)
            frames, mask = out["ctc_logits"], out["state_mask"]
        else:  # stage 1 needs neither the greedy path nor the text encoder
            frames, mask = self._ctc_frames(states, state_mask)
            nll = states.new_zeros(())
        ctc = ctc_loss(frames, mask, local, IGNORE)
        b = self.config.loss_b if contrastive else 0.0
        return {"loss": (1 - b) * ctc + b * nll, "ctc": ctc, "nll": nll}

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes: the frozen text encoder and the word-embedding
        copies are rebuilt from their assets at load time."""
        frozen = ("text_model.", "vq.word_embeddings", "decoder.word_embeddings",
                  "ctc.word_embeddings")
        return {k: v for k, v in self.state_dict().items() if not k.startswith(frozen)
                and (not k.startswith("doc_encoder.") or is_lora_weight(k))}

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write config + trained weights + the text encoder's embedding checksum."""
        self.write_checkpoint(path, {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
            "state": self.trained_state_dict(),
            "word_embeddings_sha256": tensor_digest(self.text.word_embeddings), **(extra or {})})

    @classmethod
    def load(cls, path: str | Path, text: TextEncoder | None = None) -> ClsrModel:
        payload = read_checkpoint(path)
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: CLSR checkpoint format {payload.get('format')}, "
                             f"this speechrag reads {CHECKPOINT_FORMAT}")
        config = ClsrConfig.from_dict(payload["config"])
        text = text or TextEncoder(config.text_encoder)
        if tensor_digest(text.word_embeddings) != payload["word_embeddings_sha256"]:
            raise ValueError(f"{path}: trained against another copy of {config.text_encoder} "
                             "(word-embedding checksum differs)")
        model = cls(config, text, payload["state"].get("vocab_ids"))
        absent = sorted(set(model.trained_state_dict()) - set(payload["state"]))
        try:
            _, unexpected = model.load_state_dict(payload["state"], strict=False)
        except RuntimeError as err:  # shape mismatch
            raise ValueError(f"{path}: weights do not fit the config ({err})") from err
        if absent or unexpected:
            raise ValueError(f"{path}: weights do not fit the config "
                             f"(missing {absent[:3]}, unexpected {unexpected[:3]})")
        return model.eval()


def _sinusoids(length: int, channels: int) -> torch.Tensor:
    """(length, channels) sine/cosine table over positions (Transformer / Whisper style)."""
    half = channels // 2
    inv = torch.exp(-torch.log(torch.tensor(10_000.0)) * torch.arange(half) / max(1, half - 1))
    t = torch.arange(length)[:, None] * inv[None]
    table = torch.cat([torch.sin(t), torch.cos(t)], dim=1)
    return F.pad(table, (0, channels - table.shape[1]))

