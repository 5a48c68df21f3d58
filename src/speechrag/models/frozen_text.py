"""What CLSR and SEAL share: trained parts around a frozen pretrained text encoder,
config helpers, and checkpoint writing.

A checkpoint holds the config and only the trained weights; the text encoder is
named by its asset and a checksum of its word embeddings, and rebuilt at load time.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechrag.text_encoder import TextEncoder

_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def _fits(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a field annotated ``int``, ``float``, ``bool``, ``str``
    (optionally ``| None``); other annotations (nested configs, tuples...) are checked by
    their own code, so they pass here."""
    parts = [p.strip() for p in annotation.split("|")]
    optional = "None" in parts
    parts = [p for p in parts if p != "None"]
    if len(parts) != 1 or parts[0] not in _SCALARS:
        return True
    if value is None:
        return optional
    want = _SCALARS[parts[0]]
    if want is bool or isinstance(value, bool):  # JSON true is not a number, 1 not a flag
        return want is bool and isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float))
    return isinstance(value, want)


def strict_config(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build the frozen dataclass ``cls`` from ``values`` (a config file, a checkpoint's
    saved config), refusing unknown keys and values of the wrong type (``"lr": "fast"``),
    so a bad config fails at once rather than after the audio is encoded."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    for name, value in values.items():
        annotation = known[name].type
        if isinstance(annotation, str) and not _fits(value, annotation):
            raise ValueError(f"{where}: {name} must be {annotation}, not {value!r}")
    return cls(**values)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A speechrag checkpoint's payload (tensors only: ``weights_only``); a file that is
    not one (garbage, truncated, another program's pickle) is a ValueError naming it."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: checkpoint not found") from None
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError...: not ours, or cut
        raise ValueError(f"{path}: not a readable speechrag checkpoint (torch.load failed: "
                         f"{type(e).__name__}); a truncated copy, or another kind of file") \
            from None
    if not isinstance(payload, dict) or "state" not in payload or "config" not in payload:
        raise ValueError(f"{path}: not a speechrag checkpoint (no config and trained weights)")
    return payload


def tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


class FrozenTextModel(nn.Module):
    """Registers the text encoder's model (so ``.to(device)`` moves it), freezes it, and
    keeps it in eval mode whatever ``train()`` is asked (no dropout in it, ever)."""

    def __init__(self, text: TextEncoder) -> None:
        super().__init__()
        self.text = text
        self.text_model = text.model
        for p in self.text_model.parameters():
            p.requires_grad_(False)
        self.text_model.eval()

    def train(self, mode: bool = True) -> FrozenTextModel:
        super().train(mode)
        self.text_model.eval()
        return self

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes (subclasses drop more frozen copies)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("text_model.")}

    def write_checkpoint(self, path: str | Path, payload: dict[str, Any]) -> None:
        """torch.save to a temporary name, then rename: a crash never leaves half a file."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)
