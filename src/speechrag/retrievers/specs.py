"""The configs an index stores for each kind of model, without the models: reading an
index, checking its model and searching it with a written question never import torch
(speechrag.retrievers.text_side), so these live apart from the retrievers they build."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from speechrag.assets import file_sha256


@dataclass(frozen=True)
class CascadeConfig:
    """ASR settings plus the text encoder. Saved in every index it builds.

    ``whisper`` names the ASR model: a Whisper asset (``whisper-base``, ``whisper-tiny.en``,
    a CTranslate2 folder) or ``moonshine-tiny`` (Moonshine, English only). ``asr_pass``:
    ``"window"`` transcribes every window on its own (with a 20 s hop, every second
    twice); ``"file"`` transcribes each recording once, with word times, and gives each
    window the words whose middle falls inside it (what the ``cascade`` preset does)."""

    whisper: str = "whisper-base"
    beam_size: int = 1  # 1 = greedy
    compute_type: str = "int8"
    language: str | None = "en"
    text_encoder: str = "all-MiniLM-L6-v2"
    cpu_threads: int = 0  # 0 = all cores
    batch_size: int = 1  # >1: decode this many 30 s chunks at once (BatchedInferencePipeline)
    asr_pass: str = "window"  # "window" | "file"; indexes made before it was kept: "window"

    def __post_init__(self) -> None:
        if self.asr_pass not in ("window", "file"):
            raise ValueError(f"cascade model: asr_pass must be 'window' or 'file', not "
                             f"{self.asr_pass!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CheckpointSpec:
    """How an index names a trained model: the checkpoint file and its checksum."""

    checkpoint: str
    sha256: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FusionSpec:
    """How an index names the fused model: both checkpoints with their checksums and
    the weight of CLSR's cosine."""

    clsr: str
    seal: str
    clsr_sha256: str = ""
    seal_sha256: str = ""
    clsr_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.clsr_weight < 1.0:
            raise ValueError(f"fusion model: clsr_weight must be in (0, 1), not "
                             f"{self.clsr_weight}")

    def to_dict(self) -> dict:
        return asdict(self)


def verified(spec: CheckpointSpec) -> CheckpointSpec:
    """The spec with the file's absolute path and actual checksum; a missing file or a
    checksum that differs from the one the index recorded is an error naming the file
    (unless the file was converted from the one recorded: ``replaces_sha256``)."""
    path = Path(spec.checkpoint)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint not found")
    actual = file_sha256(path)
    if spec.sha256 and spec.sha256 != actual and spec.sha256 in _replaced(path):
        # the same weights, converted from an older format
        return CheckpointSpec(str(path.resolve()), spec.sha256)
    if spec.sha256 and spec.sha256 != actual:
        raise ValueError(f"{path}: checkpoint changed since the index was built "
                         f"(sha256 {actual[:12]}..., index says {spec.sha256[:12]}...); "
                         "its vectors would not match: index the audio again into a new "
                         "directory, or search with the checkpoint that built it")
    return CheckpointSpec(str(path.resolve()), actual)


def _replaced(path: Path) -> list[str]:
    """The checksums a converted checkpoint says it replaces (torch only on this path)."""
    from speechrag.models.trained import read_checkpoint

    return list(read_checkpoint(path).get("replaces_sha256", []))
