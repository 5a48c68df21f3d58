"""Average the trained weights of SEAL checkpoints of one model config (a "model soup"),
to score the average with ``benchmarks/validate.py`` like any other checkpoint.

    .venv/bin/python benchmarks/average.py soup.pt seal runs/a/model.pt runs/b/model.pt

``seal`` is the checkpoint shipped in the package. Checkpoints must share the model
config (the same shapes, the same frozen parts); the text encoder is the packaged one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from speechrag.models.seal import SealModel
from speechrag.models.text_encoder import TextEncoder
from speechrag.retrievers import TRAINED_DIR


def average(paths: list[Path], out: Path) -> None:
    text = TextEncoder()
    models = [SealModel.load(p, text) for p in paths]
    for p, m in zip(paths[1:], models[1:], strict=True):
        if m.config != models[0].config:
            raise ValueError(f"{p}: another model config than {paths[0]}")
    states = [m.trained_state_dict() for m in models]
    mean = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
                if v.is_floating_point() else v) for k, v in states[0].items()}
    soup = SealModel(models[0].config, text)
    soup.load_state_dict(mean, strict=False)
    soup.save(out, extra={"averaged": [str(p) for p in paths]})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("checkpoints", nargs="+", help="SEAL checkpoints (.pt) or 'seal'")
    args = ap.parse_args(argv)
    average([TRAINED_DIR / "seal.pt" if c == "seal" else Path(c) for c in args.checkpoints],
            args.out)
    print(args.out)


if __name__ == "__main__":
    main()
