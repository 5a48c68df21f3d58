"""One retriever interface for every system, and the loader that builds one by name.

A retriever turns segments of speech, text queries and spoken queries into
unit-norm vectors in one space. Everything downstream (index, search, eval)
only sees those vectors, so the cascade and the end-to-end models are measured
by the same code.

A model is named by a preset (a plain JSON file in ``speechrag/presets``), a path
to such a JSON file, or a spec dict ``{"kind": ..., **config}``. The spec is what
an index stores, so it can rebuild the retriever that made it and refuse another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from speechrag.cascade import CascadeConfig, CascadeRetriever
from speechrag.checkpoints import CheckpointSpec, checkpoint_arch, file_sha256
from speechrag.clsr_retriever import ClsrRetriever
from speechrag.fusion_retriever import FusionRetriever, FusionSpec
from speechrag.models.frozen_text import strict_config
from speechrag.seal_retriever import SealRetriever
from speechrag.segment import Segment
from speechrag.text_encoder import TextEncoder

PRESETS_DIR = Path(__file__).parent / "presets"
TRAINED_DIR = Path(__file__).parent / "trained"  # checkpoints shipped in the package
DEFAULT_MODEL = "cascade"


@runtime_checkable
class Retriever(Protocol):
    """What every system implements. ``kind`` and ``config`` (a frozen dataclass)
    identify it; ``dim`` is the embedding size."""

    kind: str
    config: Any
    dim: int

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        """segments -> (N, dim) float32 unit norm, and a transcript per segment (or None)."""
        ...

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """text queries -> (N, dim) float32 unit norm."""
        ...

    def encode_query_audio(self, samples: list[np.ndarray]) -> np.ndarray:
        """spoken queries, each (n,) float32 at 16 kHz -> (N, dim) float32 unit norm."""
        ...

    def encode_query_audio_with_text(self, samples: list[np.ndarray]
                                     ) -> tuple[np.ndarray, list[str | None]]:
        """The same vectors, and what the model heard in each query (None where it writes
        no transcript): hybrid search matches those words."""
        ...


def words_between(spoken: list[tuple[float, float, str]], start_s: float, end_s: float) -> str:
    """The reference words said in [start_s, end_s), with each passage's words spread
    evenly over its span (start_s, end_s, text) and a word counted where its midpoint is."""
    words: list[str] = []
    for start, end, text in spoken:
        if end <= start_s or start >= end_s:
            continue
        tokens = text.split()
        step = (end - start) / max(len(tokens), 1)
        words += [w for i, w in enumerate(tokens) if start_s <= start + (i + 0.5) * step < end_s]
    return " ".join(words)


class GoldTextRetriever:
    """The clean-text upper bound: each segment is represented by the reference text
    spoken inside it, embedded by the text encoder.

    Word times inside a passage are not known, so a passage's words are spread
    evenly over its gold span and a segment gets the words whose midpoint falls
    inside it. Only the evaluator builds this (it needs the corpus manifest).
    """

    kind = "gold-text"

    def __init__(self, spoken: dict[str, list[tuple[float, float, str]]],
                 text_encoder: str = "all-MiniLM-L6-v2") -> None:
        """spoken: source -> [(start_s, end_s, text)] of the passages in that recording."""
        self.spoken = spoken
        self.config = CascadeConfig(whisper="none", text_encoder=text_encoder)
        self.text = TextEncoder(text_encoder)
        self.dim = self.text.dim

    def text_of(self, segment: Segment) -> str:
        return words_between(self.spoken.get(segment.source, []), segment.start_s, segment.end_s)

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        texts = [self.text_of(s) for s in segments]
        return self.text.encode(texts), list(texts)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.text.encode(texts)

    def encode_query_audio(self, samples: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError("the clean-text upper bound has no speech front end")

    def encode_query_audio_with_text(self, samples: list[np.ndarray]
                                     ) -> tuple[np.ndarray, list[str | None]]:
        raise NotImplementedError("the clean-text upper bound has no speech front end")


def preset_names() -> list[str]:
    """Presets (JSON specs) and the trained checkpoints shipped in the package."""
    return sorted({p.stem for p in PRESETS_DIR.glob("*.json")}
                  | {p.stem for p in TRAINED_DIR.glob("*.pt")})


def resolve_spec(model: str) -> dict[str, Any]:
    """A model name or path -> spec dict ``{"kind": ..., **config}``."""
    preset, shipped = PRESETS_DIR / f"{model}.json", TRAINED_DIR / f"{model}.pt"
    path = preset if preset.is_file() else shipped if shipped.is_file() else Path(model)
    if path.suffix == ".pt" and path.is_file():  # a trained CLSR or SEAL checkpoint
        return {"kind": checkpoint_arch(path), "checkpoint": str(path.resolve()),
                "sha256": file_sha256(path)}
    if not path.is_file():
        raise ValueError(f"unknown model {model!r}: use one of {preset_names()}, "
                         "a model JSON file or a trained checkpoint (.pt)")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"{path}: a model spec is a JSON object with a 'kind' key")
    if spec["kind"] == FusionRetriever.kind:
        spec = _resolve_fusion(spec, path)
    return spec


def _resolve_fusion(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """A fusion spec names its two models as a shipped name or a checkpoint path; ->
    the same spec with their files and checksums, as an index built with it stores."""
    out = dict(spec)
    for arch in ("clsr", "seal"):
        name = spec.get(arch)
        if not isinstance(name, str):
            raise ValueError(f"{path}: a fusion model names its '{arch}' checkpoint")
        part = resolve_spec(name)
        if part.get("kind") != arch:
            raise ValueError(f"{path}: '{arch}' must be a {arch} checkpoint, and {name!r} "
                             f"is a {part.get('kind')} model")
        out[arch], out[f"{arch}_sha256"] = part["checkpoint"], part["sha256"]
    return out


CONFIGS: dict[str, type] = {"cascade": CascadeConfig, "gold-text": CascadeConfig,
                            "clsr": CheckpointSpec, "seal": CheckpointSpec,
                            FusionRetriever.kind: FusionSpec}


def canonical_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec with every config field filled in, so an index written before a field
    (with a backward-compatible default) was added still matches its own model."""
    values = dict(spec)
    kind = values.pop("kind", None)
    if kind not in CONFIGS:
        raise ValueError(f"unknown retriever kind {kind!r} (known: {', '.join(CONFIGS)})")
    return {"kind": kind, **strict_config(CONFIGS[kind], values, f"{kind} model").to_dict()}


def from_spec(spec: dict[str, Any]) -> Retriever:
    """Build the retriever a spec describes."""
    values = dict(spec)
    kind = values.pop("kind")
    if kind == "cascade":
        return CascadeRetriever(strict_config(CascadeConfig, values, "cascade model"))
    if kind == "clsr":
        return ClsrRetriever(strict_config(CheckpointSpec, values, "clsr model"))
    if kind == "seal":
        return SealRetriever(strict_config(CheckpointSpec, values, "seal model"))
    if kind == FusionRetriever.kind:
        return FusionRetriever(strict_config(FusionSpec, values, "fusion model"))
    if kind == GoldTextRetriever.kind:  # an evaluator's upper-bound index, searched by text
        config = strict_config(CascadeConfig, values, "gold-text model")
        return GoldTextRetriever({}, text_encoder=config.text_encoder)
    raise ValueError(f"unknown retriever kind {kind!r} (known: {', '.join(CONFIGS)})")


def spec_of(retriever: Retriever) -> dict[str, Any]:
    """The spec an index stores for the retriever that fills it."""
    return {"kind": retriever.kind, **retriever.config.to_dict()}


def load_retriever(model: str = DEFAULT_MODEL) -> Retriever:
    """Load a retriever by preset name (``cascade``, ``cascade-beam5``, ``cascade-tiny``,
    ``clsr+seal``), a shipped checkpoint's name (``clsr``, ``seal``), the path of a model
    JSON file, or the path of a trained CLSR or SEAL checkpoint (``.pt``)."""
    return from_spec(resolve_spec(model))
