"""Real human speech against the same sentences in TTS voices, every model in one run.

    .venv/bin/python benchmarks/human_speech.py [--models cascade seal runs/x.pt]

The only human recordings that ship offline (Debian pocketsphinx-testdata: 5 LibriVox
sentences, 5 "cards" utterances) are spoken queries; the target of each is its own
transcript among 3,410 text documents: the 10 transcripts and every sentence of the
WikiSpoken test split (never trained on). The same sentences spoken by the evaluation
voices are asked in the same run, so a model trained on synthetic voices that fails on a
human one shows up as a gap between rows.
See :mod:`speechrag.corpus.human`. n = 10 per voice: a sanity check, not a benchmark.
Reports go to benchmarks/results/human-speech/.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from speechrag.assets import cache_dir
from speechrag.corpus.human import HUMAN, build_human_corpus
from speechrag.evaluate import evaluate, safe_name
from speechrag.metrics import retrieval_summary
from speechrag.report import report_name, write_report

RESULTS = Path(__file__).parent / "results" / "human-speech"


def table(reports: list[dict]) -> str:
    """One row per (model, voice, query kind): R@1/5/10, MRR and the ranks themselves;
    the model's median query latency (every voice) on its first row."""
    rows = ["| model | voice | kind | n | R@1 | R@5 | R@10 | MRR | ranks (- = below 10) | "
            "query p50 ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        p50 = f"{r['query_latency_ms']['p50']:.0f}"
        voices = sorted({q["voice"] for q in r["queries"]}, key=lambda v: (v != HUMAN, v))
        for voice in voices:
            for kind in sorted({q["kind"] for q in r["queries"]}, reverse=True):
                ranks = [q["rank"] for q in r["queries"]
                         if q["voice"] == voice and q["kind"] == kind]
                s = retrieval_summary(ranks)
                shown = " ".join("-" if x is None else str(x) for x in ranks)
                rows.append(f"| {report_name(r)} | {voice} | {kind} | {s['n']} | "
                            f"{100 * s['R@1']:.0f} | {100 * s['R@5']:.0f} | "
                            f"{100 * s['R@10']:.0f} | {s['MRR']:.2f} | {shown} | {p50} |")
                p50 = ""
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cascade", "seal"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    bench = cache_dir() / "bench"
    corpus = build_human_corpus(bench / "human-speech")
    print(f"{len(corpus.spoken_queries)} spoken queries ({len(corpus.queries)} sentences x "
          f"{len(corpus.config['voices'])} voices), {len(corpus.documents)} text documents",
          flush=True)
    reports, work = [], bench / "eval-human-speech"
    for model in args.models:
        shutil.rmtree(work / f"index-{safe_name(model)}", ignore_errors=True)
        print(f"  {model} ...", flush=True)
        reports.append(evaluate(corpus, model, work, spoken=True))
        write_report(reports[-1], args.out)
    print(table(reports), flush=True)


if __name__ == "__main__":
    main()
