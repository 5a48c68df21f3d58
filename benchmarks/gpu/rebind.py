"""A CLSR or SEAL checkpoint trained on the GPU machine against the fp16 copy of MiniLM
that fits its 64 MiB carry, re-saved against the packaged fp32 MiniLM. The checkpoint
holds no text-encoder weights (they are rebuilt from the asset at load time); only the
recorded word-embedding checksum changes. A checkpoint trained against the packaged
MiniLM (on the CPU machine) comes out with the same checksum and no GPU note.

    .venv/bin/python benchmarks/gpu/rebind.py runs/clsr-gpu/best.pt clsr-gpu.pt [--fp16-top]

``--fp16-top`` stores Whisper's trained top blocks (``encoder_layers`` > 0: 3.15M weights
a whisper-base block) in fp16, which halves what they add to the file (12.6 -> 6.3 MB a
block). Loading casts them back into the fp32 parameters; at search time they run in the
encoder's dtype (bf16 where the CPU has it), so storing them at fp16's 11-bit precision
loses less than running them does. Score the stored file, not the one it came from.
"""

from __future__ import annotations

import argparse

import torch

from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.models.seal import SealConfig, SealModel
from speechrag.text_encoder import TextEncoder


def rebind(src: str, dst: str, fp16_top: bool = False) -> None:
    payload = torch.load(src, map_location="cpu", weights_only=True)
    model: ClsrModel | SealModel
    if payload.get("arch", "clsr") == "seal":
        seal = SealConfig.from_dict(payload["config"])
        model = SealModel(seal, TextEncoder(seal.text_encoder))
        checksum = "text_encoder_sha256"
    else:
        clsr = ClsrConfig.from_dict(payload["config"])
        model = ClsrModel(clsr, TextEncoder(clsr.text_encoder), payload["state"].get("vocab_ids"))
        checksum = "word_embeddings_sha256"
    _, unexpected = model.load_state_dict(payload["state"], strict=False)
    if unexpected:
        raise ValueError(f"{src}: unexpected weights {unexpected[:3]}")
    skip = ("format", "arch", "config", "state", checksum)
    extra = {k: v for k, v in payload.items() if k not in skip}
    model.save(dst, extra=extra)
    saved = torch.load(dst, map_location="cpu", weights_only=True)
    if saved[checksum] != payload[checksum]:  # trained against the GPU machine's fp16 copy
        saved["trained_on"] = "GPU, fp16 copy of the text encoder"
    if fp16_top:
        saved["state"] = {k: v.half() if k.startswith("encoder_top.") else v
                          for k, v in saved["state"].items()}
    torch.save(saved, dst)
    print(dst, extra)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--fp16-top", action="store_true",
                    help="store Whisper's trained top blocks in fp16")
    args = ap.parse_args()
    rebind(args.src, args.dst, args.fp16_top)
