"""A question from the command line: whole-process wall time of a cold ``speechrag search``.

    .venv/bin/python benchmarks/cold_query.py [--runs 5] [--bench DIR]

For each index of the WikiSpoken benchmark (benchmarks/wikispoken.py builds them under
``<cache>/bench/eval-100``: cascade, clsr, seal, clsr+seal, clean text), one written
question is answered by a fresh process, timed from its start to its exit:

- ``full retriever``: what ``speechrag search`` did before: build the index's whole
  retriever (sentence-transformers, torch, the speech side), embed the question, search;
- ``speechrag search``: the command as it is now (the model's text side on ONNX Runtime).

Runs alternate between the two (the machine's noise hits both alike); the table gives
the median of ``--runs`` per index and checks that both return the same hits (ids and
order). Results: benchmarks/results/cold-query.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from wikispoken import RESULTS

from speechrag.assets import cache_dir

INDEXES = {"cascade": "index-cascade", "clsr": "index-clsr", "seal": "index-seal",
           "clsr+seal": "index-clsr_seal", "clean text": "index-clean-text"}
QUESTIONS = ["who invented the telephone", "when did the roman empire fall",
             "what is the largest planet", "which river flows through paris",
             "how do volcanoes form"]
BIN = Path(sys.executable).parent
FULL = """
import json, sys
from speechrag.index import Index
from speechrag.retrievers import from_spec
index = Index.open(sys.argv[1])
retriever = from_spec(index.config.model)
hits = index.search(retriever.encode_text([sys.argv[2]]), 10)[0]
print(json.dumps({"hits": [h.to_dict() for h in hits]}))
"""


def timed(cmd: list[str]) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    hits = json.loads(out.strip().splitlines()[-1])["hits"]
    return wall, [h["id"] for h in hits]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bench", type=Path, default=cache_dir() / "bench" / "eval-100")
    args = ap.parse_args()
    rows = []
    for name, folder in INDEXES.items():
        path = args.bench / folder
        if not (path / "index.json").is_file():
            print(f"skipping {name}: no index at {path} (benchmarks/wikispoken.py builds it)")
            continue
        full, fast, same = [], [], True
        for run in range(args.runs):
            q = QUESTIONS[run % len(QUESTIONS)]
            t_full, ids_full = timed([sys.executable, "-c", FULL, str(path), q])
            t_fast, ids_fast = timed([str(BIN / "speechrag"), "search", "--index", str(path),
                                      "--query", q, "--k", "10", "--json"])
            full.append(t_full)
            fast.append(t_fast)
            same &= ids_full == ids_fast
        rows.append({"index": name, "full_s": statistics.median(full),
                     "search_s": statistics.median(fast), "same_hits": same,
                     "full_runs": full, "search_runs": fast})
        print(f"{name}: full {rows[-1]['full_s']:.2f} s, search {rows[-1]['search_s']:.2f} s, "
              f"same hits {same}", flush=True)
    table = Table(title=f"Cold `speechrag search --query`, wall seconds, median of {args.runs}")
    for col in ("index", "full retriever", "speechrag search", "speed-up", "same hits"):
        table.add_column(col, justify="left" if col == "index" else "right")
    for r in rows:
        table.add_row(r["index"], f"{r['full_s']:.2f}", f"{r['search_s']:.2f}",
                      f"{r['full_s'] / r['search_s']:.1f}x", "yes" if r["same_hits"] else "NO")
    Console().print(table)
    out = RESULTS / "cold-query.json"
    out.write_text(json.dumps({"runs": args.runs, "questions": QUESTIONS, "rows": rows},
                              indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
