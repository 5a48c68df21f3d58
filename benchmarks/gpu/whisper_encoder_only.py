"""Write the encoder's tensors of a CTranslate2 Whisper ``model.bin`` as a model.bin of
their own (same container, same bytes per tensor): the half of Whisper base that the
trained retrievers use, small enough to carry to the GPU machine.

    .venv/bin/python benchmarks/gpu/whisper_encoder_only.py SRC_DIR DST_DIR
"""

from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path
from typing import BinaryIO


def _u32(f: BinaryIO) -> int:
    return struct.unpack("<I", f.read(4))[0]


def _string(f: BinaryIO) -> bytes:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n)


def _packed(s: bytes) -> bytes:
    return struct.pack("<H", len(s)) + s


def encoder_only(src: Path, dst: Path) -> int:
    dst.mkdir(parents=True, exist_ok=True)
    kept = []
    with open(src / "model.bin", "rb") as f:
        version, spec, revision = _u32(f), _string(f), _u32(f)
        for _ in range(_u32(f)):
            name, rank = _string(f), f.read(1)[0]
            shape, dtype = f.read(4 * rank), f.read(1)
            n_bytes = _u32(f)
            raw = f.read(n_bytes)
            if name.startswith(b"encoder/"):
                kept.append(_packed(name) + bytes([rank]) + shape + dtype
                            + struct.pack("<I", n_bytes) + raw)
    with open(dst / "model.bin", "wb") as g:
        g.write(struct.pack("<I", version) + _packed(spec)
                + struct.pack("<II", revision, len(kept)))
        g.writelines(kept)
        g.write(struct.pack("<I", 0))  # no aliases
    shutil.copyfile(src / "config.json", dst / "config.json")
    shutil.copyfile(src / ".sha256-ok", dst / ".sha256-ok")  # the full file's checksum
    return len(kept)


if __name__ == "__main__":
    print(encoder_only(Path(sys.argv[1]), Path(sys.argv[2])), "tensors")
