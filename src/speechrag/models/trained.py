"""One checkpoint contract for every model the project trains (CLSR, SEAL).

A checkpoint is a ``torch.save`` dict, read with ``weights_only``::

    arch        "clsr" | "seal": which class loads it
    format      CHECKPOINT_FORMAT: the layout of this dict and of the config
    config      the model's frozen config, as a dict (rebuilt with the class's from_dict)
    state       only the trained weights
    pretrained  {"text_encoder": sha256, "whisper": sha256}: the frozen parts, named in
                the config by asset and rebuilt at load time, with digests that must match
    ...         anything else the trainer records (step, score, trained_on)

:class:`TrainedModel` owns writing and reading that dict, so every model saves and
loads the same way (sentence-transformers' one-base-class pattern). A file without
``arch`` or of another format is refused with a message that says how to convert it
(``python -m speechrag.train.upgrade``).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from speechrag.assets import file_sha256, resolve
from speechrag.models.text_encoder import TextEncoder

__all__ = ["CHECKPOINT_FORMAT", "TrainedModel", "file_sha256", "read_checkpoint",
           "load_trained_state", "tensor_digest", "whisper_digest", "write_checkpoint"]

CHECKPOINT_FORMAT = 2
UPGRADE = "python -m speechrag.train.upgrade"


def read_checkpoint(path: str | Path, arch: str | None = None) -> dict[str, Any]:
    """A speechrag checkpoint's payload (tensors only: ``weights_only``). A file that is
    not one (garbage, truncated, another program's pickle), one of an older format, or
    (with ``arch``) one of another model is a ValueError naming it."""
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
    if "arch" not in payload or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: a speechrag checkpoint of an older format (format "
                         f"{payload.get('format')}, {'no arch' if 'arch' not in payload else ''}"
                         f"); this speechrag reads format {CHECKPOINT_FORMAT}: convert it "
                         f"once with `{UPGRADE} {path}`")
    if arch is not None and payload["arch"] != arch:
        raise ValueError(f"{path}: a {payload['arch']} checkpoint, not a {arch} one")
    return payload


def write_checkpoint(path: str | Path, arch: str, config: dict[str, Any],
                     state: dict[str, torch.Tensor], pretrained: dict[str, str],
                     extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint by the contract above to a temporary name, then rename: a crash
    never leaves half a file."""
    payload = {**(extra or {}), "arch": arch, "format": CHECKPOINT_FORMAT, "config": config,
               "state": state, "pretrained": pretrained}
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_trained_state(model: Any, path: str | Path, payload: dict[str, Any],
                       names: dict[str, str]) -> None:
    """Put a checkpoint's trained weights into ``model`` (which has
    ``pretrained_digests`` and ``trained_state_dict``), after checking that its frozen
    parts are the copies it was trained with (``names``: each part's asset name, for the
    message). A mismatch, or weights that do not fit, is a ValueError naming the file."""
    saved = payload.get("pretrained", {})
    for part, digest in model.pretrained_digests().items():
        if saved.get(part) and digest and saved[part] != digest:
            raise ValueError(f"{path}: trained against another copy of {names.get(part, part)} "
                             f"({part} checksum differs)")
    try:
        missing, unexpected = model.load_state_dict(payload["state"], strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"{path}: weights do not fit the config ({err})") from err
    missing = sorted(set(model.trained_state_dict()) & set(missing))
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


@lru_cache(maxsize=8)
def _cached_file_digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def whisper_digest(whisper: str) -> str:
    """sha256 of the Whisper weights file a model's encoder is read from ("" when the
    name is a Hugging Face id not on this machine: nothing to compare). An asset joined
    and verified into the cache carries its checksum in ``.sha256-ok``, which is taken as
    it is (the GPU machine's encoder-only copy carries the full file's, so checkpoints
    trained there record the same asset); otherwise the file is hashed, once per process
    and file version."""
    model_dir = Path(resolve(whisper))
    marker = model_dir / ".sha256-ok"
    if marker.is_file():
        return marker.read_text().strip()
    model_bin = model_dir / "model.bin"
    if not model_bin.is_file():
        return ""
    st = os.stat(model_bin)
    return _cached_file_digest(str(model_bin), st.st_size, st.st_mtime_ns)


class TrainedModel(nn.Module):
    """Trained parts around a frozen pretrained text encoder (and Whisper's frozen
    encoder, read from the cached states): the base of CLSR and SEAL.

    Registers the text encoder's model (so ``.to(device)`` moves it), freezes it and
    keeps it in eval mode whatever ``train()`` is asked (no dropout in it, ever), and
    saves and loads checkpoints by the contract above. A subclass sets ``arch`` and
    ``config_cls`` (a frozen dataclass with ``to_dict``/``from_dict``, and ``whisper``
    and ``text_encoder`` asset names), and keeps ``self.config``."""

    arch: ClassVar[str]
    config_cls: ClassVar[type]
    config: Any

    def __init__(self, text: TextEncoder) -> None:
        super().__init__()
        self.text = text
        self.text_model = text.model
        for p in self.text_model.parameters():
            p.requires_grad_(False)
        self.text_model.eval()

    def train(self, mode: bool = True) -> TrainedModel:
        super().train(mode)
        self.text_model.eval()
        return self

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes (subclasses drop more frozen copies)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("text_model.")}

    def pretrained_digests(self) -> dict[str, str]:
        return {"text_encoder": tensor_digest(self.text.word_embeddings),
                "whisper": whisper_digest(self.config.whisper)}

    def save(self, path: str | Path, extra: dict[str, Any] | None = None,
             dtypes: dict[str, torch.dtype] | None = None) -> None:
        """Write the checkpoint (config, trained weights, pretrained digests, ``extra``)
        to a temporary name, then rename: a crash never leaves half a file. ``dtypes``
        stores the named weights in another dtype (Whisper's trained blocks in fp16
        keep a shipped file small)."""
        state = {k: v.to(dtypes[k]) if dtypes and k in dtypes else v
                 for k, v in self.trained_state_dict().items()}
        write_checkpoint(path, self.arch, self.config.to_dict(), state,
                         self.pretrained_digests(), extra)

    @classmethod
    def build(cls, config: Any, text: TextEncoder, state: dict[str, torch.Tensor]
              ) -> TrainedModel:
        """The untrained model a checkpoint's weights go into (CLSR reads its vocabulary
        from ``state`` and picks its aligner's class)."""
        return cls(config, text)  # type: ignore[call-arg]

    @classmethod
    def load(cls, path: str | Path, text: TextEncoder | None = None) -> Any:
        """A trained model from its checkpoint, in eval mode. ``text``: a text encoder
        already loaded (shared between models), else the config's is loaded. A file of
        another model, pretrained parts that differ from the ones it was trained with, or
        weights that do not fit the config are errors naming the file."""
        payload = read_checkpoint(path, cls.arch)
        config = cls.config_cls.from_dict(payload["config"])
        text = text or TextEncoder(config.text_encoder)
        model = cls.build(config, text, payload["state"])
        load_trained_state(model, path, payload, {"text_encoder": config.text_encoder,
                                                  "whisper": config.whisper})
        return model.eval()
