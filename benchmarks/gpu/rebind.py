"""A CLSR or SEAL checkpoint trained on the GPU machine against the fp16 copy of MiniLM
that fits its 64 MiB carry, re-saved against the packaged fp32 MiniLM. The checkpoint
holds no text-encoder weights (they are rebuilt from the asset at load time); only the
recorded word-embedding checksum changes.

    .venv/bin/python benchmarks/gpu/rebind.py runs/clsr-gpu/best.pt clsr-gpu.pt
"""

from __future__ import annotations

import sys

import torch

from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.models.seal import SealConfig, SealModel
from speechrag.text_encoder import TextEncoder


def rebind(src: str, dst: str) -> None:
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
    model.save(dst, extra={**extra, "trained_on": "GPU, fp16 copy of the text encoder"})
    print(dst, extra)


if __name__ == "__main__":
    rebind(sys.argv[1], sys.argv[2])
