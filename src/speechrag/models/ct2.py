"""Read tensors from a CTranslate2 ``model.bin`` (binary format version 6).

Why not ctranslate2's own API: it loads a model for inference but does not hand
back its weights; reading the container takes 40 lines and gives PyTorch tensors
we can fine-tune. Layout (little-endian): u32 version, string spec name, u32
revision, u32 variable count; per variable: string name, u8 rank, u32 per
dimension, u8 dtype, u32 byte count, raw data; then u32 alias count and
(alias, target) string pairs. A string is a u16 length (counting a trailing NUL)
followed by its bytes and the NUL.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

SUPPORTED_VERSION = 6
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
BF16 = 5  # numpy has no bfloat16: read as uint16 and widen


def _u32(f: BinaryIO) -> int:
    return struct.unpack("<I", f.read(4))[0]


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n)[:-1].decode("utf-8")


def read_ct2(path: str | Path, keep: Callable[[str], bool] = lambda name: True
             ) -> dict[str, torch.Tensor]:
    """Tensors of a CTranslate2 model file whose names pass ``keep`` (others are skipped
    without being read). Aliases resolve to their target tensor."""
    path = Path(path)
    out: dict[str, torch.Tensor] = {}
    with open(path, "rb") as f:
        version = _u32(f)
        if version != SUPPORTED_VERSION:
            raise ValueError(f"{path}: CTranslate2 format version {version}, "
                             f"expected {SUPPORTED_VERSION}")
        _string(f)  # spec name
        _u32(f)  # revision
        for _ in range(_u32(f)):
            name = _string(f)
            rank = f.read(1)[0]
            shape = struct.unpack(f"<{rank}I", f.read(4 * rank)) if rank else ()
            dtype = f.read(1)[0]
            n_bytes = _u32(f)
            if not keep(name):
                f.seek(n_bytes, 1)
                continue
            raw = f.read(n_bytes)
            if dtype == BF16:
                bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                array = bits.view(np.float32)
            elif dtype in DTYPES:
                array = np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<"))
            else:
                raise ValueError(f"{path}: variable {name} has unknown dtype {dtype}")
            out[name] = torch.from_numpy(array.reshape(shape).copy())
        for _ in range(_u32(f)):
            alias, target = _string(f), _string(f)
            if keep(alias) and target in out:
                out[alias] = out[target]
    return out
