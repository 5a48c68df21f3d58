"""One retriever interface for every system, and one registry that builds them by kind.

A retriever turns segments of speech, text queries and spoken queries into
unit-norm vectors in one space. Everything downstream (index, search, eval)
only sees those vectors, so the cascade and the end-to-end models are measured
by the same code.

A model is named by a preset (a plain JSON file in ``speechrag/presets``), a shipped
checkpoint (``speechrag/trained``), a path to a model JSON file or a checkpoint, or a
spec dict ``{"kind": ..., **config}``. The spec is what an index stores, so it can
rebuild the retriever that made it and refuse another.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from speechrag.assets import file_sha256
from speechrag.config import strict_config
from speechrag.retrievers.specs import CascadeConfig, CheckpointSpec, FusionSpec

if TYPE_CHECKING:
    from speechrag.segment import Segment

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PRESETS_DIR = PACKAGE_DIR / "presets"
TRAINED_DIR = PACKAGE_DIR / "trained"  # checkpoints shipped in the package
DEFAULT_MODEL = "cascade"


@runtime_checkable
class Retriever(Protocol):
    """What every system implements. ``kind`` and ``config`` (a frozen dataclass)
    identify it; ``dim`` is the embedding size; ``encoding`` holds what else shapes its
    vectors (the end-to-end models' Whisper piece length), which an index records."""

    kind: str
    config: Any
    dim: int

    @property
    def encoding(self) -> dict[str, Any]: ...

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        """segments -> (N, dim) float32 unit norm, and a transcript per segment (or None)."""
        ...

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """text queries -> (N, dim) float32 unit norm."""
        ...

    def encode_query_audio(self, samples: list[np.ndarray]
                           ) -> tuple[np.ndarray, list[str | None]]:
        """spoken queries, each (n,) float32 at 16 kHz -> (N, dim) float32 unit norm, and
        what the model heard in each (None where it writes no transcript): hybrid search
        matches those words."""
        ...


# kind -> (the config an index stores for it, the retriever built from that config). The
# retrievers are imported when built: reading an index and searching it with a written
# question need only the configs (and no torch: speechrag.retrievers.text_side).
REGISTRY: dict[str, tuple[type, str]] = {
    "cascade": (CascadeConfig, "speechrag.retrievers.cascade:CascadeRetriever"),
    "clsr": (CheckpointSpec, "speechrag.retrievers.clsr:ClsrRetriever"),
    "seal": (CheckpointSpec, "speechrag.retrievers.seal:SealRetriever"),
    "fusion": (FusionSpec, "speechrag.retrievers.fused:FusionRetriever"),
    "gold-text": (CascadeConfig, "speechrag.retrievers.gold_text:GoldTextRetriever"),  # evaluator's
}


def retriever_class(kind: str) -> type:
    """The retriever class of a registered kind (imported now)."""
    module, name = REGISTRY[kind][1].split(":")
    return getattr(importlib.import_module(module), name)


def preset_names() -> list[str]:
    """Presets (JSON specs) and the trained checkpoints shipped in the package."""
    return sorted({p.stem for p in PRESETS_DIR.glob("*.json")}
                  | {p.stem for p in TRAINED_DIR.glob("*.pt")})


def resolve_spec(model: str) -> dict[str, Any]:
    """A model name or path -> spec dict ``{"kind": ..., **config}``."""
    preset, shipped = PRESETS_DIR / f"{model}.json", TRAINED_DIR / f"{model}.pt"
    path = preset if preset.is_file() else shipped if shipped.is_file() else Path(model)
    if path.suffix == ".pt" and path.is_file():  # a trained CLSR or SEAL checkpoint
        from speechrag.retrievers.trained import checkpoint_arch

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
    if spec["kind"] == "fusion":
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


def _config(spec: dict[str, Any]) -> tuple[str, Any]:
    """A spec -> (its kind, its config, checked: unknown keys and wrong types refused)."""
    values = dict(spec)
    kind = values.pop("kind", None)
    if kind not in REGISTRY:
        raise ValueError(f"unknown retriever kind {kind!r} (known: {', '.join(REGISTRY)})")
    return kind, strict_config(REGISTRY[kind][0], values, f"{kind} model")


def canonical_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec with every config field filled in, so an index written before a field
    (with a backward-compatible default) was added still matches its own model."""
    kind, config = _config(spec)
    return {"kind": kind, **config.to_dict()}


def from_spec(spec: dict[str, Any]) -> Retriever:
    """Build the retriever a spec describes."""
    kind, config = _config(spec)
    return retriever_class(kind)(config)


def spec_of(retriever: Retriever) -> dict[str, Any]:
    """The spec an index stores for the retriever that fills it."""
    return {"kind": retriever.kind, **retriever.config.to_dict()}


def load_retriever(model: str = DEFAULT_MODEL) -> Retriever:
    """Load a retriever by preset name (``cascade``, ``cascade-beam5``, ``cascade-tiny``,
    ``clsr+seal``), a shipped checkpoint's name (``clsr``, ``seal``), the path of a model
    JSON file, or the path of a trained CLSR or SEAL checkpoint (``.pt``)."""
    return from_spec(resolve_spec(model))
