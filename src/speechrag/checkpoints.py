"""What the trained retrievers (CLSR, SEAL) share: how an index names a checkpoint,
how a checkpoint is verified, and how segments are batched through Whisper.

An index stores ``{"kind": "clsr" | "seal", "checkpoint": PATH, "sha256": HEX}``: a
checkpoint that changed since the index was built is refused rather than silently
mixing two models' vectors in one table.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from speechrag.models.whisper_encoder import LogMel, WhisperEncoder

BATCH_SECONDS = 400.0  # audio per encoder batch: bounds padding waste and memory


@dataclass(frozen=True)
class CheckpointSpec:
    """How an index names a trained model: the checkpoint file and its checksum."""

    checkpoint: str
    sha256: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_arch(path: str | Path) -> str:
    """"clsr" or "seal": what a checkpoint file holds (CLSR's first format had no tag)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state" not in payload:
        raise ValueError(f"{path}: not a speechrag checkpoint")
    return str(payload.get("arch", "clsr"))


def verified(spec: CheckpointSpec) -> CheckpointSpec:
    """The spec with the file's absolute path and actual checksum; a missing file or a
    checksum that differs from the one the index recorded is an error naming the file."""
    path = Path(spec.checkpoint)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint not found")
    actual = file_sha256(path)
    if spec.sha256 and spec.sha256 != actual:
        raise ValueError(f"{path}: checkpoint changed since the index was built "
                         f"(sha256 {actual[:12]}..., index says {spec.sha256[:12]}...)")
    return CheckpointSpec(str(path.resolve()), actual)


def whisper_states(encoder: WhisperEncoder, mel: LogMel, samples: list[np.ndarray]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (each (n,) float32, 16 kHz) -> Whisper states (B, S, D) on each clip's actual
    length (30 s chunks past 30 s), zero-padded, and their mask (B, S)."""
    states = [encoder.encode_long(mel(s)) for s in samples]
    s_max = max(len(x) for x in states)
    padded = torch.stack([torch.nn.functional.pad(x, (0, 0, 0, s_max - len(x)))
                          for x in states])
    mask = torch.arange(s_max)[None] < torch.tensor([len(x) for x in states])[:, None]
    return padded, mask


def length_batches(seconds: list[float], limit: float = BATCH_SECONDS) -> list[list[int]]:
    """Indices sorted by duration, cut into consecutive groups of at most ``limit``
    seconds each: clips of similar length share a batch (little padding)."""
    groups: list[list[int]] = []
    total = 0.0
    for i in sorted(range(len(seconds)), key=seconds.__getitem__):
        if groups and total + seconds[i] <= limit:
            groups[-1].append(i)
            total += seconds[i]
        else:
            groups.append([i])
            total = seconds[i]
    return groups
