"""Indexing throughput on Ray: one process against a local Ray with 1 and 2 workers.

    .venv/bin/python benchmarks/ray_index.py [--episodes 4] [--model cascade]

The first ``--episodes`` long-form recordings of the WikiSpoken test corpus
(benchmarks/wikispoken.py builds it) are indexed three ways into fresh indexes, in one
run: ``speechrag index`` in one process; ``--ray --ray-workers 1`` (a local Ray, one
worker with 2 CPUs); ``--ray --ray-workers 2`` (two workers, one CPU each). Wall time is
the whole command's (Ray's start included), so it is what a user waits. The table counts
the windows whose transcript and vector equal the one-process run's (Whisper's words
depend on its thread count: speechrag.distributed). Results: benchmarks/results/ray-index.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.table import Table
from wikispoken import RESULTS

from speechrag.assets import cache_dir
from speechrag.index import Index

BIN = Path(sys.executable).parent
WAYS = {"one process": [],
        "Ray, 1 worker x 2 CPUs": ["--ray", "--ray-workers", "1", "--ray-cpus", "2"],
        "Ray, 2 workers x 1 CPU": ["--ray", "--ray-workers", "2", "--ray-cpus", "1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--model", default="cascade")
    args = ap.parse_args()
    audio = sorted((cache_dir() / "bench" / "wikispoken-test-100" / "audio").glob("*.wav"))
    files = [str(f) for f in audio[:args.episodes]]
    if len(files) < args.episodes:
        sys.exit("no WikiSpoken test corpus: run benchmarks/wikispoken.py first")
    hours = sum(sf.info(f).duration for f in files) / 3600
    work = cache_dir() / "bench" / "ray-index"
    rows, ref = [], None
    for i, (name, extra) in enumerate(WAYS.items()):
        out = work / f"index-{i}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "speechrag"), "index", *files, "--index", str(out),
                        "--model", args.model, *extra], check=True, capture_output=True)
        wall = time.perf_counter() - t0
        index = Index.open(out)
        got = {r["id"]: r for r in index.rows(("id", "text", "vector"))}
        same = None  # windows whose transcript and vector equal the one-process run's
        if ref is None:
            ref = got
        elif got.keys() == ref.keys():
            same = sum(got[k]["text"] == ref[k]["text"]
                       and np.allclose(got[k]["vector"], ref[k]["vector"], atol=1e-5)
                       for k in ref)
        rows.append({"way": name, "wall_s": wall, "audio_h": hours,
                     "audio_h_per_h": hours / (wall / 3600), "segments": len(got),
                     "same_rows_as_one_process": same})
        print(json.dumps(rows[-1]), flush=True)
    table = Table(title=f"{args.model}: {len(files)} recordings, {hours * 60:.1f} min of audio, "
                        "2 cores")
    for col in ("way", "wall s", "audio h per hour", "vs one process",
                "rows equal to one process's"):
        table.add_column(col, justify="left" if col == "way" else "right")
    for r in rows:
        table.add_row(r["way"], f"{r['wall_s']:.0f}", f"{r['audio_h_per_h']:.1f}",
                      f"{rows[0]['wall_s'] / r['wall_s']:.2f}x",
                      "-" if r["same_rows_as_one_process"] is None
                      else f"{r['same_rows_as_one_process']} of {r['segments']}")
    Console(width=120).print(table)
    path = RESULTS / "ray-index.json"
    path.write_text(json.dumps({"model": args.model, "files": files, "rows": rows},
                               indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
