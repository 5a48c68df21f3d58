"""SEAL: a speech encoder and a text encoder mapped into one embedding space.

SEAL: Speech Embedding Alignment Learning for Speech Large Language Model with
Retrieval-Augmented Generation (../shared/papers/002): separate speech and text
encoders, one shared scaling/projection layer; stage 1 aligns speech with the text
embedding of its own transcript, stage 2 fine-tunes for retrieval with InfoNCE
(in-batch negatives) multi-tasked with the alignment loss.

    speech: Whisper states (B, S, D_enc)             frozen, cached on disk in training
      (-> Whisper's top k blocks + LayerNorm         trained, with encoder_layers = k)
      -> conv1d, stride k, GELU -> (B, S/k, E)       trained   (speech layer 0)
      -> 2-layer MLP, residual -> (B, S/k, E)        trained   (speech layer 1)
      -> masked mean pool (or attention pool) -> shared projection -> unit norm (B, E)
    text:   tokens -> frozen sentence encoder -> its pooled embedding (B, E)
      -> shared projection -> unit norm (B, E)

The alignment loss (:mod:`speechrag.models.alignment`, paper 001) compares speech layers
with text-encoder layers by mean-pooled cosine or Sinkhorn (Wasserstein), at one
layer pair or summed over several. E is the text encoder's width, so the speech
states live where the text states do. The projection starts as the identity: an
untrained SEAL searches text exactly as the plain text encoder does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from speechrag.config import strict_config
from speechrag.models.alignment import AlignmentConfig, alignment_loss, mean_pool
from speechrag.models.encoder_top import EncoderTop
from speechrag.models.losses import IGNORE, info_nce
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.trained import TrainedModel


@dataclass(frozen=True)
class SealConfig:
    """Everything that defines a SEAL model; the defaults are the shipped ``seal``.
    Saved in every checkpoint."""

    whisper: str = "whisper-base"
    text_encoder: str = "all-MiniLM-L6-v2"
    d_encoder: int = 512  # width of the Whisper states (384 tiny, 512 base)
    downsample: int = 4  # conv stride over Whisper's 50 states/s
    d_hidden: int = 1024  # MLP hidden width
    dropout: float = 0.1
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    align_weight: float = 1.0  # weight of the alignment loss in stage 2
    nce_temperature: float = 0.05  # retrieval InfoNCE (stage 2)
    # "mean" pools a window's states evenly; "attention" learns a score per state and
    # pools by its softmax (scores start at zero: exactly the mean, so a run may start
    # from a mean-pooling checkpoint and lose nothing).
    pool: str = "mean"
    # Whisper's last blocks trained with the model (0: the whole encoder frozen); they
    # start from Whisper's weights (models/encoder_top.py)
    encoder_layers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SealConfig:
        """Unknown keys are an error (a misspelled setting must not pass silently)."""
        values = dict(values)
        if isinstance(values.get("alignment"), dict):
            values["alignment"] = strict_config(AlignmentConfig, values["alignment"],
                                                "SEAL alignment config")
        config = strict_config(cls, values, "SEAL config")
        if config.pool not in ("mean", "attention"):
            raise ValueError(f"SEAL config: pool must be 'mean' or 'attention', not "
                             f"{config.pool!r}")
        return config


class SpeechAdaptor(nn.Module):
    """Whisper states (B, S, D_enc), mask (B, S) -> per-layer states [(B, S', E)] and
    their mask (B, S'), S' = ceil(S / k). Padding never leaks into a real state."""

    def __init__(self, d_encoder: int, width: int, k: int, d_hidden: int,
                 dropout: float) -> None:
        super().__init__()
        self.k = k
        self.conv = nn.Conv1d(d_encoder, width, kernel_size=k, stride=k)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, d_hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(d_hidden, width))

    def forward(self, states: torch.Tensor, mask: torch.Tensor
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        pad = (-states.shape[1]) % self.k
        x = F.pad(states * mask[..., None].to(states.dtype), (0, 0, 0, pad))
        m = F.pad(mask, (0, pad)).view(mask.shape[0], -1, self.k).any(-1)
        h0 = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        h1 = h0 + self.mlp(h0)
        keep = m[..., None].to(h0.dtype)
        return [h0 * keep, h1 * keep], m


class SealModel(TrainedModel):
    """The trained parts (speech adaptor, shared projection) around a frozen text encoder."""

    arch: ClassVar[str] = "seal"
    config_cls: ClassVar[type] = SealConfig

    def __init__(self, config: SealConfig, text: TextEncoder) -> None:
        super().__init__(text)
        self.config = config
        e = text.dim
        self.adaptor = SpeechAdaptor(config.d_encoder, e, config.downsample, config.d_hidden,
                                     config.dropout)
        self.projection = nn.Linear(e, e)
        self.pool_score = nn.Linear(e, 1) if config.pool == "attention" else None
        self.encoder_top = (EncoderTop(config.whisper, config.encoder_layers)
                            if config.encoder_layers else None)
        self._text_cache: dict[tuple[int, ...], list[torch.Tensor]] = {}
        self._query_cache: dict[tuple[int, ...], torch.Tensor] = {}
        with torch.no_grad():
            self.projection.weight.copy_(torch.eye(e))
            self.projection.bias.zero_()
            if self.pool_score is not None:
                self.pool_score.weight.zero_()
                self.pool_score.bias.zero_()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(B, E) pooled speech or text-encoder embedding -> (B, E) shared space, unit norm."""
        return F.normalize(self.projection(x), dim=-1)

    def forward(self, states: torch.Tensor, state_mask: torch.Tensor) -> dict[str, Any]:
        """states (B, S, D_enc), state_mask (B, S) -> speech_emb (B, E) unit norm, and the
        adaptor's per-layer states and mask (for the alignment loss). With
        ``encoder_layers`` = k, states are Whisper's below its last k blocks."""
        if self.encoder_top is not None:
            states = self.encoder_top(states, state_mask)
        layers, mask = self.adaptor(states, state_mask)
        return {"speech_emb": self.project(self.pool(layers[-1], mask)), "layers": layers,
                "mask": mask}

    def pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, S', E) adaptor states, mask (B, S') -> (B, E): the masked mean, or with
        ``pool="attention"`` the softmax(score)-weighted sum over real states."""
        if self.pool_score is None:
            return mean_pool(x, mask)
        score = self.pool_score(x).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        weight = torch.softmax(score, dim=1).nan_to_num(0.0)  # a row with no state: zeros
        return (weight.to(x.dtype)[..., None] * x).sum(1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """texts -> (N, E) in the shared space, unit norm."""
        emb = torch.from_numpy(self.text.encode(texts)).to(self.projection.weight.device)
        return self.project(emb)

    def text_sentence(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded token ids (B, N), lengths (B,) -> the text encoder's embedding (B, E)."""
        return self.text.encode_embeddings(self.text.word_embeddings[ids.clamp(min=0)], lengths)

    def training_loss(self, states: torch.Tensor, state_mask: torch.Tensor,
                      targets: torch.Tensor, query_ids: torch.Tensor,
                      query_lengths: torch.Tensor, contrastive: bool = True
                      ) -> dict[str, torch.Tensor]:
        """targets (B, N) transcript ids (IGNORE on padding); query_ids (B, Q) and
        query_lengths (B,) the paired questions.

        Stage 1 (``contrastive=False``): the alignment loss, speech against the text
        encoder's states of its own transcript. Stage 2: InfoNCE from the questions to
        the speech in the shared space + ``align_weight`` x the alignment loss.
        """
        out = self(states, state_mask)
        lengths = (targets != IGNORE).sum(dim=1)
        text_layers, text_mask = self._cached_text_states(targets, lengths)
        align = alignment_loss(self.config.alignment, out["layers"], out["mask"], text_layers,
                               text_mask)
        parts = {"align": align}
        if contrastive:
            q = self._cached_queries(query_ids, query_lengths)
            nll = info_nce(self.project(q), out["speech_emb"], self.config.nce_temperature)
            parts |= {"nll": nll, "loss": nll + self.config.align_weight * align}
        else:
            parts |= {"nll": align.new_zeros(()), "loss": align}
        return parts

    @torch.no_grad()
    def _cached_text_states(self, ids: torch.Tensor, lengths: torch.Tensor
                            ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The frozen text encoder's states of each transcript, computed once per distinct
        transcript and kept (only the layers the alignment uses): on 2 CPU cores the
        text encoder over a batch of passages cost more than the whole trained side.
        -> per-layer (B, M, E) (unused layers are None) and the mask (B, M)."""
        n_layers = self.text.transformer.config.num_hidden_layers + 1  # embeddings first
        used = sorted({t % n_layers for _, t in self.config.alignment.layers})
        rows = []
        for row, n in zip(ids.tolist(), lengths.tolist(), strict=True):
            key = tuple(row[:n])
            if key not in self._text_cache:
                layers, _ = self.text.hidden_states(ids.new_tensor([key]), ids.new_tensor([n]))
                self._text_cache[key] = [layers[i][0].half() for i in used]
            rows.append(self._text_cache[key])
        m = max(r[0].shape[0] for r in rows)
        mask = torch.arange(m, device=ids.device)[None] < (lengths[:, None] + 2)
        out: list[torch.Tensor | None] = [None] * n_layers
        for j, i in enumerate(used):
            out[i] = torch.stack([F.pad(r[j], (0, 0, 0, m - r[j].shape[0])) for r in rows]
                                 ).float()
        return out, mask  # type: ignore[return-value]

    @torch.no_grad()
    def _cached_queries(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Text-encoder embeddings (B, E) of the questions, computed once per question."""
        rows = []
        for row, n in zip(ids.tolist(), lengths.tolist(), strict=True):
            key = tuple(row[:n])
            if key not in self._query_cache:
                self._query_cache[key] = self.text_sentence(ids.new_tensor([key]),
                                                             ids.new_tensor([n]))[0]
            rows.append(self._query_cache[key])
        return torch.stack(rows)
