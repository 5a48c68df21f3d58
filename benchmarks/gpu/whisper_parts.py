"""Cut a CTranslate2 Whisper ``model.bin`` into parts small enough to carry to the GPU
machine (64 MiB a call), and join them again there. Same container, same bytes per
tensor: a part is a model.bin holding some of the tensors.

    .venv/bin/python benchmarks/gpu/whisper_parts.py encoder SRC_DIR DST_DIR
    .venv/bin/python benchmarks/gpu/whisper_parts.py decoder SRC_DIR DST_DIR --blocks 3
    python3 benchmarks/gpu/whisper_parts.py merge MODEL_DIR PART_DIR   # on the GPU machine

``encoder``: every ``encoder/`` tensor (what SEAL and CLSR read; 35 MB after xz for
Whisper base). ``decoder``: the decoder's first ``--blocks`` blocks, its final norm, its
position table and its scalar settings, without the token embedding and output
projection (what CLSR's ``decoder.init = "whisper"`` reads; 3 blocks of Whisper base are
25 MB). ``merge`` adds a part's tensors to MODEL_DIR/model.bin (written to a temporary
file and renamed, so a process reading it meanwhile sees the old or the new file). The
part's ``.sha256-ok`` is the full file's checksum, so checkpoints record the same asset.
Standard library only: the GPU machine runs it before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _u32(f: BinaryIO) -> int:
    return struct.unpack("<I", f.read(4))[0]


def _string(f: BinaryIO) -> bytes:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n)


def _packed(s: bytes) -> bytes:
    return struct.pack("<H", len(s)) + s


Records = dict[bytes, bytes]
Aliases = dict[bytes, bytes]  # alias name -> target name


def read_records(path: Path) -> tuple[bytes, Records, Aliases]:
    """model.bin -> (header: version, spec and revision as written, {name: record},
    {alias: target}); a record is the tensor's bytes as they stand in the file."""
    with open(path, "rb") as f:
        version, spec, revision = _u32(f), _string(f), _u32(f)
        records = {}
        for _ in range(_u32(f)):
            name, rank = _string(f), f.read(1)[0]
            shape, dtype = f.read(4 * rank), f.read(1)
            n_bytes = _u32(f)
            records[name] = (_packed(name) + bytes([rank]) + shape + dtype
                             + struct.pack("<I", n_bytes) + f.read(n_bytes))
        aliases = {}
        for _ in range(_u32(f)):
            alias = _string(f)
            aliases[alias] = _string(f)
    header = struct.pack("<I", version) + _packed(spec) + struct.pack("<I", revision)
    return header, records, aliases


def write_records(path: Path, header: bytes, records: Records, aliases: Aliases) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two merges may race
    with open(tmp, "wb") as g:
        g.write(header + struct.pack("<I", len(records)))
        g.writelines(records.values())
        g.write(struct.pack("<I", len(aliases)))
        g.writelines(_packed(a) + _packed(t) for a, t in aliases.items())
    tmp.replace(path)


def cut(src: Path, dst: Path, keep: Callable[[str], bool]) -> int:
    """Write the tensors of src/model.bin whose names ``keep`` accepts (and the aliases
    of those among them) as dst/model.bin, with src's config.json and .sha256-ok (when it has one).
    Returns how many tensors were kept."""
    header, records, aliases = read_records(src / "model.bin")
    kept = {k: v for k, v in records.items() if keep(k.decode())}
    dst.mkdir(parents=True, exist_ok=True)
    write_records(dst / "model.bin", header, kept,
                  {a: t for a, t in aliases.items() if keep(a.decode()) and t in kept})
    for name in ("config.json", ".sha256-ok"):  # the checksum marker where there is one
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)
    return len(kept)


def decoder_part(blocks: int) -> Callable[[str], bool]:
    def keep(name: str) -> bool:
        if not name.startswith("decoder/"):
            return False
        part = name.split("/")[1]
        if part in ("embeddings", "projection"):
            return False
        if part.startswith("layer_") and part != "layer_norm":
            return int(part.removeprefix("layer_")) < blocks
        return True

    return keep


def merge(model: Path, part: Path) -> int:
    """Add part/model.bin's tensors and aliases to model/model.bin. Returns the tensors
    added."""
    header, records, aliases = read_records(model / "model.bin")
    _, extra, extra_aliases = read_records(part / "model.bin")
    new = {k: v for k, v in extra.items() if k not in records}
    write_records(model / "model.bin", header, records | new, aliases | extra_aliases)
    return len(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["encoder", "decoder", "merge"])
    ap.add_argument("src", type=Path, help="the CTranslate2 directory (merge: the model)")
    ap.add_argument("dst", type=Path, help="the part's directory (merge: the part)")
    ap.add_argument("--blocks", type=int, default=3, help="decoder blocks kept (decoder)")
    args = ap.parse_args()
    if args.what == "merge":
        print(merge(args.src, args.dst), "tensors added")
    elif args.what == "encoder":
        print(cut(args.src, args.dst, lambda n: n.startswith("encoder/")), "tensors")
    else:
        print(cut(args.src, args.dst, decoder_part(args.blocks)), "tensors")


if __name__ == "__main__":
    main()
