"""Every system on the WikiSpoken long-form test split, side by side in one run: the
cascade (greedy and beam 5), the end-to-end models (CLSR, SEAL) and the clean-text
upper bound, all with the same 40 s / 20 s windows, the same queries and the one
evaluator.

    .venv/bin/python benchmarks/wikispoken.py [--passages 100] [--models cascade clsr ...]
        [--fresh] [--spoken-queries] [--hybrid 0.3]

Builds (or reuses) the corpus in the speechrag cache, evaluates each model, writes
the JSON reports and comparison chart to benchmarks/results/, and prints the
README's markdown tables: retrieval per query kind, and indexing speed as ratios to
the cascade's. ``--fresh`` re-indexes every model in this run (otherwise an index
left by an earlier run is reused with its recorded time), which is what a speed
comparison needs: the machine is noisy, so only times taken in one run compare.
``--hybrid W`` adds, for every model that writes transcripts, a second row from the same
index: hybrid search (speechrag.lexical) with lexical weight W.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from speechrag.assets import cache_dir
from speechrag.corpus.build import CorpusConfig, build_corpus, speak_queries
from speechrag.evaluate import evaluate, safe_name
from speechrag.index import IndexConfigError
from speechrag.lexical import HybridConfig
from speechrag.report import plot_reports, report_name, write_report

RESULTS = Path(__file__).parent / "results"
# who speaks each corpus: the test split in the evaluation voices; the held-out train
# passages in training voices (evaluation voices are for the test table alone)
VOICES = {"test": ("flite:slt", "festival:kal_diphone"),
          "validation": ("flite:kal", "flite:awb")}
BASELINES = ("cascade", "cascade-window", "cascade-moonshine", "cascade-beam5")


def pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def markdown(reports: list[dict]) -> str:
    head = ("| model | queries | R@1 | R@5 | R@10 | MRR | WER % | index wall s | RTF | "
            "query p50 ms |\n|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for r in reports:
        ret = r["retrieval"]
        ix = r["indexing"]
        rtf = "-" if ix["rtf"] is None else f"{ix['rtf']:.3f}"
        for name, m in [("all", ret["overall"]), *ret["by_kind"].items()]:
            rows.append(
                f"| {report_name(r)} | {name} (n={m['n']}) | {pct(m['R@1'])} | "
                f"{pct(m['R@5'])} | {pct(m['R@10'])} | {pct(m['MRR'])} | {pct(r['wer'])} | "
                f"{ix['wall_s']:.0f} | {rtf} | {r['query_latency_ms']['p50']:.0f} |")
    return "\n".join([head, *rows])


def speed_table(reports: list[dict]) -> str:
    """Indexing speedup of every model over each baseline run in the same benchmark."""
    base = {r["model"]: r["indexing"]["wall_s"] for r in reports if r["model"] in BASELINES}
    if not base:
        return ""
    head = "| model | index wall s | " + " | ".join(f"speedup vs {b}" for b in base) + " |"
    rows = [head, "|---|---|" + "---|" * len(base)]
    for r in reports:
        if r.get("hybrid"):
            continue  # the same index as the row above it
        wall = r["indexing"]["wall_s"]
        rows.append(f"| {report_name(r)} | {wall:.0f} | "
                    + " | ".join(f"{b / max(wall, 1e-9):.2f}x" for b in base.values()) + " |")
    return "\n".join(rows)


def hybrid_chart(reports: list[dict], out: Path) -> Path | None:
    """``out/hybrid.png``: R@1 of every model, dense beside hybrid, on its own index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = {safe_name(r["model"]): r for r in reports if not r.get("hybrid")}
    mixed = {safe_name(r["model"]): r for r in reports if r.get("hybrid")}
    names = [n for n in dense if n in mixed]
    if not names:
        return None
    weight = next(iter(mixed.values()))["hybrid"]["weight"]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
    x = range(len(names))
    for shift, (label, group) in zip((-0.2, 0.2), (("dense", dense),
                                                   (f"hybrid (W = {weight:g})", mixed)),
                                     strict=True):
        values = [100 * group[n]["retrieval"]["overall"]["R@1"] for n in names]
        bars = ax.bar([i + shift for i in x], values, width=0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("R@1 %, written questions")
    ax.set_ylim(50, 100)
    ax.legend(loc="lower right")
    ax.set_title("hybrid search: dense hits re-ranked by the words they share with the question")
    fig.tight_layout()
    path = out / "hybrid.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=100)
    ap.add_argument("--models", nargs="+",
                    default=["cascade", "cascade-beam5", "seal", "gold-text"])
    ap.add_argument("--split", choices=sorted(VOICES), default="test",
                    help="test (evaluation voices), or validation: the train passages "
                         "training holds out, in two training voices (to choose a setting "
                         "on before the test run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--fresh", action="store_true", help="re-index every model in this run")
    ap.add_argument("--work", type=Path, default=None,
                    help="where the indexes go (default <cache>/bench/eval-<passages>)")
    ap.add_argument("--spoken-queries", action="store_true",
                    help="ask the queries spoken by the evaluation voices (speech to speech)")
    ap.add_argument("--hybrid", type=float, default=0.0,
                    help="also score each model with hybrid search at this lexical weight")
    args = ap.parse_args(argv)

    voices = VOICES[args.split]
    config = CorpusConfig(split=args.split, passages=args.passages, voices=voices,
                          layout="episodes")
    root = cache_dir() / "bench" / f"wikispoken-{args.split}-{args.passages}"
    corpus = build_corpus(config, root)
    if args.spoken_queries and not corpus.spoken_queries:
        corpus = speak_queries(root)
    audio_min = sum(m["end"] - m["start"] for m in corpus.manifest) / 60
    print(f"corpus: {len(corpus.manifest)} passages, {len(corpus.audio_files())} episodes, "
          f"{audio_min:.1f} min of speech, {len(corpus.queries)} queries", flush=True)
    tag = "" if args.split == "test" else f"{args.split}-"
    work = args.work or cache_dir() / "bench" / f"eval-{tag}{args.passages}"
    reports = []
    for model in args.models:
        if args.fresh:
            shutil.rmtree(work / f"index-{safe_name(model)}", ignore_errors=True)
        print(f"evaluating {model} ...", flush=True)
        report = evaluate(corpus, model, work, spoken=args.spoken_queries)
        write_report(report, args.out)
        reports.append(report)
        if args.hybrid > 0:
            try:  # the same index, re-ranked; a model without transcripts has no row
                report = evaluate(corpus, model, work, spoken=args.spoken_queries,
                                  hybrid=HybridConfig(weight=args.hybrid))
            except IndexConfigError as err:
                print(f"  no hybrid row for {model}: {err}", flush=True)
                continue
            write_report(report, args.out)
            reports.append(report)
    plot_reports(args.out)
    if args.hybrid > 0:
        hybrid_chart(reports, args.out)
    print(markdown(reports))
    print()
    print(speed_table(reports))


if __name__ == "__main__":
    main()
