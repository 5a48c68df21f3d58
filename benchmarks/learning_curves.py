"""CLSR and SEAL learning on the same cached Whisper states: validation query R@1 (and
CLSR's WER) against training step, from the runs' log.jsonl files.

    .venv/bin/python benchmarks/learning_curves.py RUN_DIR [RUN_DIR ...] [--out PNG]

A run started with ``--init`` continues the curve of the run it started from (its
steps are shifted by the initial checkpoint's step). Prints one row per evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def load(run: Path) -> tuple[str, list[dict]]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    shift = rows[0].get("init_step") or 0 if rows and "init" in rows[0] else 0
    return run.name, [{**r, "step": r["step"] + shift} for r in rows if "val_r1" in r]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=RESULTS / "learning_curves.png")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    print("| run | step | stage | val query R@1 % | val transcript R@1 % | val WER % |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        name, rows = load(run)
        ax.plot([r["step"] for r in rows], [100 * r["val_r1"] for r in rows], "o-",
                label=f"{name}: query R@1")
        if any("val_wer" in r for r in rows):
            ax.plot([r["step"] for r in rows], [100 * r["val_wer"] for r in rows], "s--",
                    label=f"{name}: WER")
        for r in rows:
            t = r.get("val_align_r1")
            w = r.get("val_wer")
            print(f"| {name} | {r['step']} | {r['stage']} | {100 * r['val_r1']:.1f} | "
                  f"{'-' if t is None else f'{100 * t:.1f}'} | "
                  f"{'-' if w is None else f'{100 * w:.1f}'} |")
    ax.set_xlabel("training step")
    ax.set_ylabel("%")
    ax.set_ylim(0, max(100, ax.get_ylim()[1]))  # WER can pass 100% (insertions)
    ax.set_title("validation on held-out train passages (training voices)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"\n{args.out}")


if __name__ == "__main__":
    main()
