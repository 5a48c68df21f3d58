"""CLSR and SEAL fused: one Whisper pass, two heads, one vector.

Both end-to-end models read the same Whisper states (:func:`share_states`: a model that
trained Whisper's top blocks beside one that did not), so running the two heads
costs one encoder pass (about 87% of either model's indexing time) plus two small
heads. Their mistakes differ: CLSR reads the words (it spells the tokens and feeds
them to the text encoder), SEAL regresses the sentence embedding straight from the
states. On the 302 held-out validation passages the fused score beat both models on
written and spoken questions (README, "CLSR and SEAL fused").

Late fusion in one vector: a segment, a text and a spoken query all become

    [sqrt(w) * e_clsr, sqrt(1 - w) * e_seal]     (E_clsr + E_seal,), unit norm

so the inner product of two such vectors is ``w cos_clsr + (1 - w) cos_seal``, the
same in every direction (text -> speech, speech -> text, speech -> speech), and the
index, search and evaluator need nothing new. ``w`` is ``clsr_weight``: 0.5 (equal
weights) unless a spec says otherwise; the ``clsr+seal`` preset takes the weight with the
best mean of written and spoken R@1 on validation for the CLSR it ships with (0.8 for the
CLSR that trained Whisper's top two blocks, docs/training.md, CLSR section 13; kept, not
tuned again, for its per-piece fine-tune that ships now, section 19).
The rough transcript is CLSR's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speechrag.models.clsr import ClsrModel
from speechrag.models.encoder_top import EncoderTop
from speechrag.models.seal import SealModel
from speechrag.models.speech_states import SpeechStates
from speechrag.models.trained import read_checkpoint
from speechrag.retrievers.specs import CheckpointSpec, FusionSpec
from speechrag.retrievers.trained import TrainedRetriever, verified


def share_states(a: nn.Module, b: nn.Module, names: tuple[str, str]) -> int:
    """Make two models of one Whisper read the same states; -> the ``trained_top`` of
    the frozen encoder pass they share.

    Models that trained the same top blocks (``encoder_layers`` k, 0 for none) share the
    states below them. A frozen-encoder model (k = 0) beside one that trained its top k
    blocks gets Whisper's own k top blocks, frozen, so both read the states below them
    and the frozen model still sees Whisper's final states. Those blocks attend over the
    trained model's scope: per 20 s piece beside a model trained so (exactly the states
    the frozen model was trained on), else over the whole segment (on audio under 20 s
    the two are the same computation; on longer audio the blocks see across piece
    edges). Two Whispers, or two different non-zero k, cannot share one pass and are
    refused by name."""
    if a.config.whisper != b.config.whisper:
        raise ValueError(f"fusion model: {names[0]} and {names[1]} read different Whisper "
                         f"encoders ({a.config.whisper!r} against {b.config.whisper!r})")
    ka, kb = a.config.encoder_layers, b.config.encoder_layers
    if ka and kb and ka != kb:
        raise ValueError(f"fusion model: {names[0]} and {names[1]} trained different "
                         f"numbers of Whisper's top blocks ({ka} against {kb}): they cannot "
                         "share one encoder pass")
    top = max(ka, kb)
    trained = a.encoder_top if a.encoder_top is not None else b.encoder_top
    for model in (a, b):
        if top and model.encoder_top is None:
            model.encoder_top = EncoderTop(model.config.whisper, top, trained.scope).eval()
    return top


class FusionRetriever(TrainedRetriever):
    """The retriever interface over a CLSR and a SEAL checkpoint that read the same
    Whisper (its states are computed once for both)."""

    kind = "fusion"

    def __init__(self, spec: FusionSpec) -> None:  # not TrainedRetriever's: two models
        clsr = verified(CheckpointSpec(spec.clsr, spec.clsr_sha256))
        seal = verified(CheckpointSpec(spec.seal, spec.seal_sha256))
        self.config = FusionSpec(clsr.checkpoint, seal.checkpoint, clsr.sha256, seal.sha256,
                                 spec.clsr_weight)
        self.clsr = ClsrModel.load(clsr.checkpoint)
        seal_text = read_checkpoint(seal.checkpoint)["config"].get("text_encoder")
        shared = self.clsr.text if seal_text == self.clsr.config.text_encoder else None
        self.seal = SealModel.load(seal.checkpoint, shared)  # one text encoder when the same
        top = share_states(self.clsr, self.seal, (clsr.checkpoint, seal.checkpoint))
        self.model = self.clsr  # what TrainedRetriever's callers read the config from
        tops = [m.encoder_top for m in (self.clsr, self.seal) if m.encoder_top is not None]
        # top blocks per piece: both models' run in the piece encoder (each piece once),
        # their states side by side in one tensor, (B, S, 2 D), split again in ``embed``
        self.stacked = bool(tops) and all(t.scope == "piece" for t in tops)
        self.tops = tops if self.stacked else []
        self.speech = SpeechStates(self.clsr.config.whisper, trained_top=top,
                                   top=self._both_tops if self.stacked else None)
        for t in tops:
            t.inference_dtype = self.speech.dtype
        if self.stacked:  # the heads read states that went through the blocks already
            self.clsr.encoder_top = self.seal.encoder_top = None
        self.scale = (math.sqrt(spec.clsr_weight), math.sqrt(1.0 - spec.clsr_weight))
        self.dim = self.clsr.text.dim + self.seal.text.dim

    def _join(self, clsr: torch.Tensor, seal: torch.Tensor) -> np.ndarray:
        """(B, E_clsr), (B, E_seal) unit norm -> (B, dim) float32 unit norm."""
        a, b = self.scale
        joined = torch.cat([a * F.normalize(clsr.float(), dim=-1),
                            b * F.normalize(seal.float(), dim=-1)], dim=-1)
        return joined.numpy().astype(np.float32)

    def _both_tops(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A piece's states below the top blocks (B, S, D) -> CLSR's and SEAL's final
        states side by side (B, S, 2 D)."""
        return torch.cat([t.run(states, mask) for t in self.tops], dim=-1)

    def embed(self, states: torch.Tensor, mask: torch.Tensor, document: bool = True
              ) -> tuple[np.ndarray, list[str | None]]:
        clsr_states, seal_states = states.chunk(2, dim=-1) if self.stacked else (states,) * 2
        out = self.clsr(clsr_states, mask, document=document)
        return (self._join(out["speech_emb"], self.seal(seal_states, mask)["speech_emb"]),
                list(self.clsr.transcripts(out)))

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        clsr = self.clsr.encode_text(texts)  # (N, E) the text encoder's sentence embedding
        if self.seal.text is self.clsr.text:  # SEAL's text side projects the same one
            return self._join(clsr, self.seal.project(clsr))
        return self._join(clsr, self.seal.encode_text(texts))
