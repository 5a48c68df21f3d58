"""A CLSR checkpoint trained on the GPU machine against the fp16 copy of MiniLM that fits
its 64 MiB carry, re-saved against the packaged fp32 MiniLM. The checkpoint holds no
text-encoder weights (they are rebuilt from the asset at load time); only the recorded
word-embedding checksum changes.

    .venv/bin/python benchmarks/gpu/rebind.py runs/clsr-gpu/best.pt clsr-gpu.pt
"""

from __future__ import annotations

import sys

import torch

from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.text_encoder import TextEncoder


def rebind(src: str, dst: str) -> None:
    payload = torch.load(src, map_location="cpu", weights_only=True)
    config = ClsrConfig.from_dict(payload["config"])
    model = ClsrModel(config, TextEncoder(config.text_encoder), payload["state"].get("vocab_ids"))
    _, unexpected = model.load_state_dict(payload["state"], strict=False)
    if unexpected:
        raise ValueError(f"{src}: unexpected weights {unexpected[:3]}")
    skip = ("format", "config", "state", "word_embeddings_sha256")
    extra = {k: v for k, v in payload.items() if k not in skip}
    model.save(dst, extra={**extra, "trained_on": "GPU, fp16 copy of the text encoder"})
    print(dst, extra)


if __name__ == "__main__":
    rebind(sys.argv[1], sys.argv[2])
