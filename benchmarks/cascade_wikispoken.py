"""The cascade baseline on the WikiSpoken long-form test split, beside the clean-text
upper bound (the same 40 s / 20 s windows holding the words actually spoken).

    .venv/bin/python benchmarks/cascade_wikispoken.py [--passages 100] [--models cascade gold-text]

Builds (or reuses) the corpus in the speechrag cache, evaluates each model with the
one evaluator, writes the JSON reports and comparison chart to benchmarks/results/,
and prints the README's markdown table.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from speechrag.assets import cache_dir
from speechrag.corpus.build import CorpusConfig, build_corpus
from speechrag.evaluate import evaluate
from speechrag.report import plot_reports, write_report

RESULTS = Path(__file__).parent / "results"


def pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def markdown(reports: list[dict]) -> str:
    head = ("| model | queries | R@1 | R@5 | R@10 | MRR | WER % | index wall s | RTF | "
            "query p50 ms |\n|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for r in reports:
        ret = r["retrieval"]
        for name, m in [("all", ret["overall"]), *ret["by_kind"].items()]:
            ix = r["indexing"]
            rows.append(
                f"| {r['model']} | {name} (n={m['n']}) | {pct(m['R@1'])} | {pct(m['R@5'])} | "
                f"{pct(m['R@10'])} | {pct(m['MRR'])} | {pct(r['wer'])} | {ix['wall_s']:.0f} | "
                f"{ix['rtf']:.3f} | {r['query_latency_ms']['p50']:.0f} |")
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=100)
    ap.add_argument("--models", nargs="+",
                    default=["cascade", "cascade-beam5", "cascade-batched", "gold-text"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    config = CorpusConfig(split="test", passages=args.passages,
                          voices=("flite:slt", "festival:kal_diphone"), layout="episodes")
    corpus = build_corpus(config, cache_dir() / "bench" / f"wikispoken-test-{args.passages}")
    audio_min = sum(m["end"] - m["start"] for m in corpus.manifest) / 60
    print(f"corpus: {len(corpus.manifest)} passages, {len(corpus.audio_files())} episodes, "
          f"{audio_min:.1f} min of speech, {len(corpus.queries)} queries", flush=True)
    work = cache_dir() / "bench" / f"eval-{args.passages}"
    reports = []
    for model in args.models:
        print(f"evaluating {model} ...", flush=True)
        report = evaluate(corpus, model, work)
        write_report(report, args.out)
        reports.append(report)
    plot_reports(args.out)
    print(markdown(reports))


if __name__ == "__main__":
    main()
