"""Spoken questions, the speech-RAG direction, side by side in one run.

    .venv/bin/python benchmarks/spoken_queries.py [--models cascade seal runs/clsr/model.pt]
        [--hybrid 0.3]
        [--passages 100] [--skip-speech]

1. Spoken description queries -> text passages: every passage of the WikiSpoken
   test split is a text document; each description is spoken by an evaluation voice.
2. Spoken queries -> spoken passages: the long-form test corpus of
   ``benchmarks/wikispoken.py`` (its indexes are reused when present), asked with
   its queries spoken.

For each: R@1/5/10, MRR and per-query latency p50/p95 (encode the spoken query +
exact search; the cascade transcribes the query with Whisper first). SEAL's claim
is a median latency at most half the cascade's with R@1 at least the cascade's.
Reports go to benchmarks/results/spoken-text/ and spoken-speech/.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from speechrag.assets import cache_dir
from speechrag.corpus.build import CorpusConfig, build_corpus, speak_queries
from speechrag.evaluate import evaluate, safe_name
from speechrag.lexical import HybridConfig
from speechrag.report import plot_reports, report_name, write_report

RESULTS = Path(__file__).parent / "results"


def pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def table(reports: list[dict]) -> str:
    base = next((r for r in reports if r["model"] == "cascade"), None)
    rows = ["| model | queries | R@1 | R@5 | R@10 | MRR | p50 ms | p95 ms | p50 / cascade |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        m = r["retrieval"]["overall"]
        lat = r["query_latency_ms"]
        ratio = "-" if base is None else f"{lat['p50'] / base['query_latency_ms']['p50']:.2f}"
        rows.append(f"| {report_name(r)} | {m['n']} | {pct(m['R@1'])} | {pct(m['R@5'])} | "
                    f"{pct(m['R@10'])} | {pct(m['MRR'])} | {lat['p50']:.0f} | "
                    f"{lat['p95']:.0f} | {ratio} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cascade", "seal"])
    ap.add_argument("--passages", type=int, default=100, help="size of the long-form corpus")
    ap.add_argument("--skip-speech", action="store_true", help="only spoken -> text")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--hybrid", type=float, default=0.0,
                    help="also score each model with hybrid search at this lexical weight "
                         "(the words of a spoken query: what the model heard)")
    args = ap.parse_args(argv)
    mixing = HybridConfig(weight=args.hybrid)
    bench = cache_dir() / "bench"

    # 1. spoken descriptions -> the whole test split as text
    root = bench / "wikispoken-test-queries"
    docs = build_corpus(CorpusConfig(split="test", passages=980, layout="queries"), root)
    if not docs.spoken_queries:
        docs = speak_queries(root, kinds=("description",))
    print(f"spoken -> text: {len(docs.documents)} passages, {len(docs.spoken_queries)} spoken "
          "description queries", flush=True)
    out = args.out / "spoken-text"
    reports = []
    for model in args.models:
        work = bench / "eval-queries"
        shutil.rmtree(work / f"index-{safe_name(model)}", ignore_errors=True)
        print(f"  {model} ...", flush=True)
        reports.append(evaluate(docs, model, work, spoken=True))
        write_report(reports[-1], out)
        if mixing.active:  # the same index, re-ranked
            reports.append(evaluate(docs, model, work, spoken=True, hybrid=mixing))
            write_report(reports[-1], out)
    plot_reports(out)
    print(table(reports), flush=True)
    if args.skip_speech:
        return

    # 2. spoken queries -> spoken passages (long-form episodes)
    root = bench / f"wikispoken-test-{args.passages}"
    corpus = build_corpus(CorpusConfig(split="test", passages=args.passages,
                                       voices=("flite:slt", "festival:kal_diphone")), root)
    if not corpus.spoken_queries:
        corpus = speak_queries(root)
    print(f"spoken -> speech: {len(corpus.manifest)} passages, {len(corpus.spoken_queries)} "
          "spoken queries", flush=True)
    out = args.out / "spoken-speech"
    reports = []
    for model in args.models:
        print(f"  {model} ...", flush=True)
        reports.append(evaluate(corpus, model, bench / f"eval-{args.passages}", spoken=True))
        write_report(reports[-1], out)
        if mixing.active and reports[-1]["wer"] is not None:  # needs transcripts
            reports.append(evaluate(corpus, model, bench / f"eval-{args.passages}",
                                    spoken=True, hybrid=mixing))
            write_report(reports[-1], out)
    plot_reports(out)
    print(table(reports))


if __name__ == "__main__":
    main()
