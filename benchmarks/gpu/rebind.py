"""A CLSR or SEAL checkpoint trained on the GPU machine against the fp16 copy of MiniLM
that fits its 64 MiB carry, re-saved against the packaged fp32 MiniLM. The checkpoint
holds no text-encoder weights (they are rebuilt from the asset at load time); only the
recorded text-encoder digest changes. A checkpoint trained against the packaged
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

from speechrag.models.clsr import ClsrModel
from speechrag.models.seal import SealModel
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.trained import read_checkpoint

MODELS = {"clsr": ClsrModel, "seal": SealModel}


def rebind(src: str, dst: str, fp16_top: bool = False) -> None:
    payload = read_checkpoint(src)
    cls = MODELS[payload["arch"]]
    config = cls.config_cls.from_dict(payload["config"])
    model = cls.build(config, TextEncoder(config.text_encoder), payload["state"])
    _, unexpected = model.load_state_dict(payload["state"], strict=False)
    if unexpected:
        raise ValueError(f"{src}: unexpected weights {unexpected[:3]}")
    skip = ("format", "arch", "config", "state", "pretrained")
    extra = {k: v for k, v in payload.items() if k not in skip}
    if model.pretrained_digests()["text_encoder"] != payload["pretrained"]["text_encoder"]:
        extra["trained_on"] = "GPU, fp16 copy of the text encoder"
    dtypes = ({k: torch.float16 for k in model.trained_state_dict() if k.startswith(
        "encoder_top.")} if fp16_top else None)
    model.save(dst, extra=extra, dtypes=dtypes)
    print(dst, extra)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--fp16-top", action="store_true",
                    help="store Whisper's trained top blocks in fp16")
    args = ap.parse_args()
    rebind(args.src, args.dst, args.fp16_top)
