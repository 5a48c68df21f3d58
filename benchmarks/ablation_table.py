"""The alignment-loss ablation table: training runs' cost and validation, beside their
test reports from ``wikispoken.py``.

    python benchmarks/ablation_table.py --runs runs/abl-cosine-last runs/abl-cosine-all \\
        --reports benchmarks/results/ablations --out benchmarks/results/ablations

For each run: seconds per training step, the last validation (written query R@1,
transcript R@1, spoken query -> text R@1), and, when ``--reports`` holds a report of
that run's ``model.pt`` (named after the run, see ``speechrag.evaluate.safe_name``),
test R@1 / MRR over all written queries. Writes ``ablation_curves.png`` (validation
over steps) and copies each run's ``log.jsonl`` as ``<run>.log.jsonl`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from speechrag.report import load_reports, report_name


def train_seconds(log: list[dict]) -> float:
    """Training time up to the log's last row. Logs written before the clock ran on
    across resumes restart at zero in each process: their pieces are added up."""
    total = previous = 0.0
    for r in log:
        if "seconds" not in r:
            continue
        if r["seconds"] < previous:  # a resumed process started its clock again
            total += previous
        previous = r["seconds"]
    return total + previous


def run_summary(run: Path) -> dict:
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_r1" in r]
    if not evals:
        raise ValueError(f"{run}: no validation in its log yet")
    last = evals[-1]
    return {"run": run.name, "steps": last["step"], "s_per_step": train_seconds(log) / last["step"],
            "val_r1": last["val_r1"], "val_align_r1": last["val_align_r1"],
            "val_spoken_r1": last.get("val_spoken_r1"), "val_n": last["val_n"],
            "val_spoken_n": last.get("val_spoken_n"), "evals": evals}


def plot(summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {"val_r1": "written query R@1 %", "val_align_r1": "transcript R@1 %",
            "val_spoken_r1": "spoken query -> text R@1 %"}
    fig, axes = plt.subplots(1, len(keys), figsize=(13, 3.8))
    for ax, (key, label) in zip(axes, keys.items(), strict=True):
        for s in summaries:
            rows = [r for r in s["evals"] if key in r]
            ax.plot([r["step"] for r in rows], [100 * r[key] for r in rows], "o-",
                    label=s["run"])
        ax.set_title(label)
        ax.set_xlabel("step")
    axes[0].legend()
    fig.suptitle("SEAL alignment ablations: validation (held-out train passages)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True)
    ap.add_argument("--reports", type=Path, help="folder of wikispoken.py reports")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    summaries = [run_summary(r) for r in args.runs]
    reports = {report_name(r): r for r in load_reports(args.reports)} if args.reports else {}
    print("| run | steps | s/step | val written R@1 | val transcript R@1 "
          "| val spoken->text R@1 | test R@1 | test MRR |")
    print("|---|---|---|---|---|---|---|---|")
    for s, run in zip(summaries, args.runs, strict=True):  # a report named after the run
        rep = reports.get(f"{s['run']}-model") or reports.get(s["run"])
        test = rep["retrieval"]["overall"] if rep else None
        spoken = "-" if s["val_spoken_r1"] is None else f"{100 * s['val_spoken_r1']:.1f}"
        print(f"| {s['run']} | {s['steps']} | {s['s_per_step']:.1f} | "
              f"{100 * s['val_r1']:.1f} | {100 * s['val_align_r1']:.1f} | {spoken} | "
              + (f"{100 * test['R@1']:.1f} | {test['MRR']:.3f} |" if test else "- | - |"))
        shutil.copyfile(run / "log.jsonl", args.out / f"{s['run']}.log.jsonl")
    print(f"\nvalidation: {summaries[0]['val_n']} passages, {summaries[0]['val_spoken_n']} "
          "spoken queries")
    plot(summaries, args.out / "ablation_curves.png")
    print(f"curves: {args.out / 'ablation_curves.png'}")


if __name__ == "__main__":
    main()
