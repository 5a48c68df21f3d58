"""The README's "At a glance" table: every shipped model and the clean-text upper bound on
the WikiSpoken test split, written and spoken questions, accuracy and speed, in one run.

    .venv/bin/python benchmarks/at_a_glance.py [--passages 100] [--out DIR]

Runs benchmarks/wikispoken.py (written questions, every model indexed fresh, so indexing
times compare) and benchmarks/spoken_queries.py (spoken questions over the passages as
text and over the long-form speech), then prints the markdown table from their reports.
About 45 minutes on 2 cores with a cold cache; the machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import spoken_queries
import wikispoken

MODELS = ["cascade", "cascade-moonshine", "clsr", "clsr+seal", "seal"]
NAMES = {"cascade": "`cascade` (default): Whisper base once over each file, then MiniLM",
         "cascade-moonshine": "`cascade-moonshine`: Moonshine tiny once over each file, "
                              "then MiniLM",
         "clsr": "`clsr`: CLSR, Whisper's top blocks trained",
         "clsr+seal": "`clsr+seal`: both end-to-end models, one Whisper pass",
         "seal": "`seal`: SEAL", "gold-text": "clean transcripts (upper bound)"}


def _reports(folder: Path) -> dict[str, dict]:
    return {r["model"]: r for r in (json.loads(p.read_text())
                                     for p in sorted(folder.glob("*.report.json")))}


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def table(out: Path) -> str:
    written = _reports(out / "written")
    to_text = _reports(out / "spoken-text")
    to_speech = _reports(out / "spoken-speech")
    base_ix = written["cascade"]["indexing"]["wall_s"]
    base_q = to_text["cascade"]["query_latency_ms"]["p50"]
    n_w = written["cascade"]["retrieval"]["overall"]["n"]
    n_t = to_text["cascade"]["retrieval"]["overall"]["n"]
    n_s = to_speech["cascade"]["retrieval"]["overall"]["n"]
    rows = [f"| model | written question -> speech R@1 ({n_w}) | spoken question -> text "
            f"R@1 ({n_t}) | spoken question -> speech R@1 ({n_s}) | indexing speed | "
            "spoken-question median latency |", "|---|---|---|---|---|---|"]
    for model in [*MODELS, "gold-text"]:
        w = written[model]
        t, s = to_text.get(model), to_speech.get(model)
        ratio = base_ix / w["indexing"]["wall_s"] if model != "gold-text" else 0.0
        speed = ("1x" if model == "cascade" else "-" if model == "gold-text"
                 else f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower")
        lat = ("-" if t is None else "1x" if model == "cascade"
               else f"{t['query_latency_ms']['p50'] / base_q:.2f}x")
        rows.append(f"| {NAMES[model]} | {_pct(w['retrieval']['overall']['R@1'])} | "
                    f"{_pct(t['retrieval']['overall']['R@1']) if t else '-'} | "
                    f"{_pct(s['retrieval']['overall']['R@1']) if s else '-'} | {speed} | {lat} |")
    day = written["cascade"]["date"][:10]
    return "\n".join(rows) + f"\n\nOne run, {day}: `.venv/bin/python benchmarks/at_a_glance.py`"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=100)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "at-a-glance")
    ap.add_argument("--table-only", action="store_true",
                    help="print the table from the reports already in --out")
    args = ap.parse_args(argv)
    if not args.table_only:
        wikispoken.main(["--passages", str(args.passages), "--fresh", "--models", *MODELS,
                         "gold-text", "--out", str(args.out / "written")])
        spoken_queries.main(["--passages", str(args.passages), "--models", *MODELS,
                             "--out", str(args.out)])
    print(table(args.out))


if __name__ == "__main__":
    main()
