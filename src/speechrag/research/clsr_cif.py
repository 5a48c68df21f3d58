"""CLSR as the paper builds it: Continuous Integrate-and-Fire and a non-autoregressive
decoder find the tokens (``aligner = "cif"``).

End-to-end Contrastive Language-Speech Pretraining Model For Long-form Spoken
Question Answering (Hu et al., 2025), https://arxiv.org/abs/2511.09282
(../shared/papers/000).

    Whisper states -> (top blocks) -> grouped, projected (B, S', D)   models/clsr.py
      -> CIF (alphas, integrate-and-fire) (B, N, D)                   research/cif.py
      -> NAR decoder -> logits (B, N, V')                             research/nar_decoder.py
      -> VQ adaptor -> text encoder -> (B, E_out)                     models/clsr.py

Loss (CLSR's L_total): (1 - a - b) CE + a |sum(alpha) - N| + b InfoNCE, with optional
auxiliary terms (CE of the CIF embeddings, CTC on the projected states, an alignment
loss to the text encoder's states) and Paraformer's glancing sampler in ASR
pretraining. Research code: the shipped CLSR uses a CTC head instead, and the runtime
imports this module only to load a checkpoint made with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from speechrag.config import strict_config
from speechrag.models.alignment import AlignmentConfig, alignment_loss
from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.models.ctc import ctc_loss
from speechrag.models.losses import IGNORE, ClsrLoss, quantity_loss
from speechrag.models.text_encoder import TextEncoder
from speechrag.research.cif import CifPredictor
from speechrag.research.glancing import glancing_mask
from speechrag.research.nar_decoder import NarDecoder, NarDecoderConfig


@dataclass(frozen=True)
class CifConfig:
    """The CIF variant's own settings (``ClsrConfig.cif``). The decoder's width is
    ``ClsrConfig.d_model``."""

    decoder: NarDecoderConfig = field(default_factory=NarDecoderConfig)
    cif_bias_init: float = -2.5
    tail_threshold: float = 0.5
    # Auxiliary CE of each CIF embedding on its own token (through the decoder's output
    # layer): supervises the alignment directly instead of only through the decoder.
    cif_ce_weight: float = 0.5
    # Glancing sampler (Paraformer's GLM, research/glancing.py) in ASR pretraining:
    # reveal floor(ratio x errors) target tokens to a second decoder pass. 0 turns it
    # off; Paraformer uses 0.75. Stage 2 and inference decode in one plain pass.
    glancing_ratio: float = 0.0
    # CTC on the projected states (before CIF), through the decoder's tied output layer
    # plus a blank: supervises which states carry which token. 0 turns it off.
    ctc_weight: float = 0.0
    # Alignment loss (paper 001) between the speech side's token-level states (layer 0:
    # CIF embeddings, layer 1: decoder states, both mapped to the text width) and the
    # text encoder's states of the transcript; weight 0 turns it off.
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    align_weight: float = 0.0
    loss_a: float = 1 / 3  # CIF quantity (MAE)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def checked_cif_config(config: ClsrConfig) -> ClsrConfig:
    """A ClsrConfig with aligner "cif" -> the same with its ``cif`` settings checked
    (unknown keys, wrong types, a decoder that does not fit) and filled in."""
    values = dict(config.cif or {})
    for name, cls in (("decoder", NarDecoderConfig), ("alignment", AlignmentConfig)):
        if isinstance(values.get(name), dict):
            values[name] = strict_config(cls, values[name], f"CLSR cif {name} config")
    cif = strict_config(CifConfig, values, "CLSR cif config")
    if cif.decoder.d_model != config.d_model:
        raise ValueError(f"CLSR cif config: decoder.d_model ({cif.decoder.d_model}) must "
                         f"equal d_model ({config.d_model})")
    if cif.decoder.init not in ("", "whisper"):
        raise ValueError(f"CLSR cif decoder config: init must be '' or 'whisper', not "
                         f"{cif.decoder.init!r}")
    if config.ctc_blocks or config.ctc_conv_blocks:
        raise ValueError("CLSR config: ctc_blocks and ctc_conv_blocks need aligner 'ctc' "
                         "(set them to 0 with aligner 'cif')")
    return dataclasses.replace(config, cif=cif.to_dict())


def cif_settings(config: ClsrConfig) -> CifConfig:
    """The CifConfig of a CIF model's ClsrConfig (checked by :func:`checked_cif_config`
    when the config was built)."""
    values = dict(config.cif or {})
    values["decoder"] = NarDecoderConfig(**values.get("decoder", {}))
    values["alignment"] = AlignmentConfig(**values.get("alignment", {}))
    return CifConfig(**values)


class ClsrCifModel(ClsrModel):
    """CLSR with the paper's CIF aligner and NAR decoder (see the module docstring)."""

    frozen_prefixes: ClassVar[tuple[str, ...]] = ("text_model.", "vq.word_embeddings",
                                                  "decoder.word_embeddings")

    def __init__(self, config: ClsrConfig, text: TextEncoder,
                 vocab_ids: torch.Tensor | None = None) -> None:
        super().__init__(config, text, vocab_ids)
        self.cif_config = c = cif_settings(config)
        d = config.d_model
        words = self.vq.word_embeddings
        self.cif = CifPredictor(d, bias_init=c.cif_bias_init, tail_threshold=c.tail_threshold)
        self.decoder = NarDecoder(c.decoder, d_encoder=d, word_embeddings=words)
        self.align_proj = nn.Linear(d, text.dim) if c.align_weight > 0 else None
        # target tokens shown by the glancing sampler: word embedding (E) -> decoder width
        self.glance_proj = nn.Linear(text.dim, d) if c.glancing_ratio > 0 else None
        self.ctc_blank = nn.Linear(d, 1) if c.ctc_weight > 0 else None  # blank logit
        self.loss = ClsrLoss(c.loss_a, config.loss_b, config.nce_temperature, IGNORE)

    @torch.no_grad()
    def init_decoder_from_whisper(self) -> None:
        """Start the decoder from Whisper's own (``decoder.init = "whisper"``; the training
        app calls this for a run from scratch): its first n_layer blocks, final LayerNorm
        and position table, and the state projection as the identity, so the
        cross-attention reads the (pooled) Whisper states it was trained on. Raises a
        ValueError naming the setting when the decoder's shape is not Whisper's."""
        from speechrag.research.whisper_decoder import (
            decoder_dims,
            read_whisper_decoder,
            transformer_decoder_state,
        )

        w = read_whisper_decoder(self.config.whisper)
        d, heads, _ = decoder_dims(w)
        c = self.cif_config.decoder
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
        if self.cif_config.decoder.init != "whisper":
            return ()
        return ("decoder.layers.", "decoder.positions.")

    def aligned(self, states: torch.Tensor, state_mask: torch.Tensor,
                target_lengths: torch.Tensor | None = None,
                glance_targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Projection, CIF and decoder: logits (B, N, V') over the local vocabulary.

        target_lengths (B,) in training (CIF fires exactly that many tokens) or None
        (CIF counts). glance_targets (B, N) local target ids (IGNORE on padding), in
        training with the glancing sampler on: the logits are the second pass's;
        "glanced" (B, N) marks the revealed positions and "free_ids" (B, N) holds the
        first, plain pass's argmax."""
        h, state_mask = self.project(states, state_mask)
        tokens, n_tokens, alphas = self.cif(self.timed(h, state_mask), state_mask,
                                            target_lengths)
        extra: dict[str, torch.Tensor] = {}
        inputs = tokens
        if glance_targets is not None and self.glance_proj is not None and self.training:
            with torch.no_grad():
                free = self.decoder.output_from_hidden(
                    self.decoder.hidden(tokens, n_tokens, h, state_mask)).argmax(-1)
            glanced = glancing_mask(free, glance_targets, self.cif_config.glancing_ratio,
                                    IGNORE)
            shown = self.glance_proj(self.vq.word_embeddings[glance_targets.clamp(min=0)])
            inputs = torch.where(glanced[..., None], shown.to(tokens.dtype), tokens)
            extra = {"glanced": glanced, "free_ids": free}
        hidden = self.decoder.hidden(inputs, n_tokens, h, state_mask)
        return {"logits": self.decoder.output_from_hidden(hidden), "n_tokens": n_tokens,
                "alphas": alphas, "cif_tokens": tokens, "decoder_states": hidden,
                "states": h, "state_mask": state_mask, **extra}

    def ctc_loss(self, states: torch.Tensor, state_mask: torch.Tensor, local: torch.Tensor
                 ) -> torch.Tensor:
        """CTC of the projected states (B, S', D), mask (B, S'), against the local target
        ids (B, N) (IGNORE on padding); class 0 is the blank, token i is class i + 1.
        Mean over the batch of the per-utterance loss divided by its target length."""
        assert self.ctc_blank is not None
        logits = torch.cat([self.ctc_blank(states), self.decoder.output(states)], dim=-1)
        return ctc_loss(logits, state_mask, local, IGNORE)

    def training_loss(self, states: torch.Tensor, state_mask: torch.Tensor,
                      targets: torch.Tensor, query_ids: torch.Tensor,
                      query_lengths: torch.Tensor, contrastive: bool = True
                      ) -> dict[str, torch.Tensor]:
        """As :meth:`ClsrModel.training_loss`, by the paper's loss. With
        ``contrastive=False`` (ASR pretraining) the text encoder is skipped: "loss" is
        (1 - a) CE + a MAE and "nll" is zero."""
        c = self.cif_config
        targets, local = self.local_targets(targets)
        lengths = (targets != IGNORE).sum(dim=1)
        if not contrastive:
            out = self.aligned(states, state_mask, lengths, glance_targets=local)
            # with the glancing sampler, CE scores only the positions not revealed
            scored = local if "glanced" not in out else local.masked_fill(out["glanced"],
                                                                          IGNORE)
            ce = F.cross_entropy(out["logits"].transpose(1, 2), scored, ignore_index=IGNORE)
            mae = quantity_loss(out["alphas"], lengths)
            parts = {"loss": (1 - c.loss_a) * ce + c.loss_a * mae, "ce": ce, "mae": mae,
                     "nll": ce.new_zeros(())}
            # accuracy of the plain pass (the glancing sampler's first pass when it is on)
            free = out["free_ids"] if "free_ids" in out else out["logits"].argmax(-1)
            out["token_ids"] = self.vocab_ids[free]
            if "glanced" in out:
                parts["glanced"] = out["glanced"].sum() / lengths.sum().clamp(min=1)
        else:
            out = self(states, state_mask, lengths)
            parts = self.loss(out["logits"], local, out["alphas"], lengths,
                              self.query_embeddings(query_ids, query_lengths),
                              out["speech_emb"])
        if c.cif_ce_weight > 0:
            cif_logits = self.decoder.output(out["cif_tokens"])
            parts["cif_ce"] = F.cross_entropy(cif_logits.transpose(1, 2), local,
                                              ignore_index=IGNORE)
            parts["loss"] = parts["loss"] + c.cif_ce_weight * parts["cif_ce"]
        if self.ctc_blank is not None:
            parts["ctc"] = self.ctc_loss(out["states"], out["state_mask"], local)
            parts["loss"] = parts["loss"] + c.ctc_weight * parts["ctc"]
        if self.align_proj is not None:
            with torch.no_grad():
                text_layers, text_mask = self.text.hidden_states(targets, lengths)
            speech = [self.align_proj(out["cif_tokens"]),
                      self.align_proj(out["decoder_states"])]
            n = speech[0].shape[1]
            mask = torch.arange(n, device=targets.device)[None] < out["n_tokens"][:, None]
            parts["align"] = alignment_loss(c.alignment, speech, mask, text_layers,
                                            text_mask)
            parts["loss"] = parts["loss"] + c.align_weight * parts["align"]
        correct = (out["token_ids"] == targets) & (targets != IGNORE)
        parts["token_acc"] = correct.sum() / lengths.sum().clamp(min=1)
        return parts
