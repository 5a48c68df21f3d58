"""The text side of an index's model: written questions -> vectors, nothing else loaded.

Every model embeds a written question with a frozen pretrained sentence encoder, and SEAL
then applies its shared projection (a linear map); the fused model joins the two. That is
all a text query needs, yet building the full retriever loads Whisper, the trained heads
and torch. :func:`text_side` builds only this part, on ONNX Runtime
(speechrag.models.onnx_text), so a cold ``speechrag search --query`` starts in about a
second instead of six. Its vectors equal the full retriever's ``encode_text`` within float
tolerance (tests/retrievers/test_text_side.py); a model the ONNX path does not take falls
back to the full retriever.

What a trained checkpoint's text side needs (its text encoder's name, SEAL's projection)
is read from the checkpoint once, with torch, and kept in the cache as
``query-side/<sha256>.npz``, named by the checkpoint's checksum; the checkpoint file is
still verified against the index on every start (a sha256 of a few MB).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

import numpy as np

from speechrag.assets import cache_dir
from speechrag.models.onnx_text import OnnxTextEncoder, Unsupported
from speechrag.retrievers.registry import _config, from_spec
from speechrag.retrievers.specs import CheckpointSpec, verified


class TextSide:
    """``encode_text(texts) -> (N, dim)`` unit norm, as the model's retriever gives them.
    Spoken questions need the speech side: :meth:`encode_query_audio` says so."""

    def __init__(self, kind: str, encoders: list[OnnxTextEncoder],
                 projections: list[tuple[np.ndarray, np.ndarray] | None],
                 scales: list[float]) -> None:
        self.kind = kind
        self.encoders, self.projections, self.scales = encoders, projections, scales
        self.dim = sum(p[0].shape[0] if p is not None else e.dim
                       for e, p in zip(encoders, projections, strict=True))

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """texts -> (N, dim) float32 unit norm."""
        parts = []
        for enc, proj, scale in zip(self.encoders, self.projections, self.scales, strict=True):
            x = enc.encode(texts)  # (N, E) unit norm
            if proj is not None:  # SEAL's shared projection, then unit norm again
                weight, bias = proj
                x = x @ weight.T + bias
                x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            parts.append(scale * x)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def encode_query_audio(self, samples: list[np.ndarray]) -> Any:
        raise RuntimeError("the text side of a model takes written questions only")


@lru_cache(maxsize=4)
def onnx_encoder(name: str) -> OnnxTextEncoder:
    """One ONNX session per text encoder per process (the fused model's two sides share
    it; a server builds it once)."""
    return OnnxTextEncoder(name)


def _checkpoint_side(spec: CheckpointSpec) -> tuple[str, tuple[np.ndarray, np.ndarray] | None]:
    """A checkpoint's (text encoder name, SEAL's projection (W (E, E), b (E,)) or None),
    from the cache, or read from the checkpoint (torch) and cached."""
    spec = verified(spec)
    cached = cache_dir() / "query-side" / f"{spec.sha256}.npz"
    if not cached.is_file():
        from speechrag.models.trained import read_checkpoint

        payload = read_checkpoint(spec.checkpoint)
        state = payload["state"]
        arrays = {"text_encoder": np.array(payload["config"]["text_encoder"])}
        if payload["arch"] == "seal":
            arrays["weight"] = state["projection.weight"].float().numpy()
            arrays["bias"] = state["projection.bias"].float().numpy()
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cached)
    with np.load(cached) as data:
        proj = (data["weight"], data["bias"]) if "weight" in data else None
        return str(data["text_encoder"]), proj


def text_side(spec: dict[str, Any]) -> Any:
    """The text side of the model a spec describes (a :class:`TextSide`), or the full
    retriever where the ONNX path does not take its text encoder."""
    kind, config = _config(spec)
    try:
        if kind in ("cascade", "gold-text"):
            return TextSide(kind, [onnx_encoder(config.text_encoder)], [None], [1.0])
        if kind in ("clsr", "seal"):
            name, proj = _checkpoint_side(config)
            return TextSide(kind, [onnx_encoder(name)], [proj], [1.0])
        if kind == "fusion":
            clsr = _checkpoint_side(CheckpointSpec(config.clsr, config.clsr_sha256))
            seal = _checkpoint_side(CheckpointSpec(config.seal, config.seal_sha256))
            w = config.clsr_weight
            return TextSide(kind, [onnx_encoder(clsr[0]), onnx_encoder(seal[0])],
                            [clsr[1], seal[1]], [math.sqrt(w), math.sqrt(1.0 - w)])
    except Unsupported:
        pass
    return from_spec(spec)

