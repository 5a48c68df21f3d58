"""Search at a million segments: the vector index against exact search.

    .venv/bin/python benchmarks/ann_search.py [--sizes 10000 100000 1000000] [--queries 200]

Vectors: the real 384-d MiniLM vectors of the benchmark (every audio segment of the
cascade index of benchmarks/wikispoken.py and the 10,000 WikiSpoken passages of
benchmarks/serve_load.py's index), and for larger sizes synthetic ones made from them:
``normalize(v_a + 0.6 v_b + 0.4 g)`` for two random real vectors a, b and Gaussian noise
g of norm ~1 (mixtures, so the copies spread over the space the real vectors span
rather than piling onto them). Queries: real written questions of the WikiSpoken test
split, embedded by the cascade's text encoder.

Each size is a real speechrag index (cascade spec) filled directly with these rows; its
vector index is built the way ``speechrag index`` builds it (Index.maintain_vector_index).
Measured per size: build time of the vector index, p50/p95 latency of one query through
``Index.search`` (k = 10) with the vector index and with ``exact=True``, recall@10 of the
vector index against exact search (numpy), disk, and the peak memory of a fresh process
that opens the index and answers the queries. Results: benchmarks/results/ann-search.json
and .png. Indexes are kept in ``<cache>/bench/ann-<size>`` (delete them to rebuild).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table
from wikispoken import RESULTS

from speechrag.assets import cache_dir
from speechrag.index import TEXT_KEY, Index, IndexConfig
from speechrag.models.onnx_text import OnnxTextEncoder
from speechrag.retrievers import resolve_spec
from speechrag.segment import SegmenterConfig

BENCH = cache_dir() / "bench"
CHUNK = 100_000


def real_vectors() -> np.ndarray:
    parts = []
    for folder in (BENCH / "eval-100" / "index-cascade", BENCH / "serve-load-10000"):
        if (folder / "index.json").is_file():
            col = lancedb.connect(str(folder)).open_table("segments").to_arrow()["vector"]
            parts.append(np.asarray(col.combine_chunks().flatten()).reshape(len(col), -1))
    if not parts:
        sys.exit("no benchmark index found: run benchmarks/wikispoken.py and "
                 "benchmarks/serve_load.py first")
    return np.concatenate(parts).astype(np.float32)


def questions(n: int) -> np.ndarray:
    root = BENCH / "wikispoken-test-100"
    texts = [json.loads(line)["text"] for line in (root / "queries.jsonl").read_text()
             .splitlines() if line.strip()]
    texts += [json.loads(line)["text"] for line in (root / "qa.jsonl").read_text()
              .splitlines() if line.strip()]
    return OnnxTextEncoder().encode(texts[:n])


def synthetic(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    a, b = rng.integers(0, len(base), n), rng.integers(0, len(base), n)
    g = rng.standard_normal((n, base.shape[1])).astype(np.float32) / np.sqrt(base.shape[1])
    v = base[a] + 0.6 * base[b] + 0.4 * g
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def vectors_for(base: np.ndarray, size: int) -> np.ndarray:
    rng = np.random.default_rng(size)
    if size <= len(base):
        return base[rng.permutation(len(base))[:size]]
    return np.concatenate([base, synthetic(base, size - len(base), rng)])


def build(path: Path, vectors: np.ndarray) -> float:
    """An index at ``path`` holding ``vectors`` as rows -> seconds its vector index took."""
    if (path / "build.json").is_file():  # made by an earlier run
        return float(json.loads((path / "build.json").read_text())["build_s"])
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    config = IndexConfig(model=resolve_spec("cascade"), segmenter=SegmenterConfig().to_dict(),
                         dim=vectors.shape[1])
    (path / "index.json").write_text(json.dumps(config.__dict__, indent=2))
    idx = Index.open(path)
    for s in range(0, len(vectors), CHUNK):
        chunk = vectors[s:s + CHUNK]
        keys = [f"{TEXT_KEY}{i}" for i in range(s, s + len(chunk))]
        idx.segments.add(pa.table({
            "id": keys, "source": [k[len(TEXT_KEY):] for k in keys], "path_key": keys,
            "start": pa.nulls(len(chunk), pa.float64()), "end": pa.nulls(len(chunk), pa.float64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()),
                                                        vectors.shape[1]),
            "text": pa.nulls(len(chunk), pa.string())}, schema=idx.segments.schema))
        print(f"  {s + len(chunk):,} rows written", flush=True)
    t0 = time.perf_counter()
    built = idx.maintain_vector_index()  # what every write does; below ANN_MIN_ROWS: nothing
    build_s = time.perf_counter() - t0 if built else 0.0
    (path / "build.json").write_text(json.dumps({"build_s": build_s}))
    return build_s


SEARCH = """
import json, sys, time
import numpy as np
from speechrag.index import Index
idx = Index.open(sys.argv[1])
queries = np.load(sys.argv[2])
exact = sys.argv[3] == "exact"
out = []
for q in queries:
    t0 = time.perf_counter()
    hits = idx.search(q[None], 10, exact=exact)[0]
    out.append({"ms": 1000 * (time.perf_counter() - t0), "ids": [h.id for h in hits]})
# VmHWM: this process's peak resident memory (ru_maxrss would include the parent's,
# which a forked child inherits)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM"))
print(json.dumps({"runs": out, "rss_mb": hwm / 1024,
                  "ann": idx.vector_index() is not None and not exact}))
"""


def search(path: Path, queries: np.ndarray, exact: bool) -> dict:
    qfile = path / "queries.npy"
    np.save(qfile, queries)
    out = subprocess.run([sys.executable, "-c", SEARCH, str(path), str(qfile),
                          "exact" if exact else "ann"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--exact-queries", type=int, default=30,
                    help="queries timed with exact search (1.4 s each at 1M)")
    args = ap.parse_args()
    base = real_vectors()
    queries = questions(args.queries)
    print(f"{len(base):,} real vectors, {len(queries)} questions", flush=True)
    rows = []
    for size in args.sizes:
        print(f"{size:,} segments ...", flush=True)
        path = BENCH / f"ann-{size}"
        vectors = vectors_for(base, size)
        build_s = build(path, vectors)
        truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]  # row numbers = ids
        ann = search(path, queries, exact=False)
        exact = search(path, queries[:args.exact_queries], exact=True)
        recall = [len({int(i.split(":")[1]) for i in r["ids"]} & set(t.tolist())) / 10
                  for r, t in zip(ann["runs"], truth, strict=True)]
        ms = [r["ms"] for r in ann["runs"]]
        exact_ms = [r["ms"] for r in exact["runs"]]
        disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        rows.append({"segments": size, "vector_index": ann["ann"], "build_s": build_s,
                     "p50_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)),
                     "exact_p50_ms": statistics.median(exact_ms),
                     "exact_p95_ms": float(np.percentile(exact_ms, 95)),
                     "recall_at_10": float(np.mean(recall)), "disk_mb": disk,
                     "search_rss_mb": ann["rss_mb"], "exact_rss_mb": exact["rss_mb"]})
        print(json.dumps(rows[-1]), flush=True)
    table = Table(title="Search at scale: one written question, k = 10, 2 cores")
    for col in ("segments", "search", "p50 ms", "p95 ms", "exact p50 ms", "recall@10",
                "index build", "disk", "memory"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['segments']:,}", "IVF-RQ" if r["vector_index"] else "exact",
                      f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['exact_p50_ms']:.0f}",
                      f"{r['recall_at_10']:.3f}", f"{r['build_s']:.0f} s",
                      f"{r['disk_mb']:.0f} MB", f"{r['search_rss_mb']:.0f} MB")
    Console(width=130).print(table)
    out = RESULTS / "ann-search.json"
    out.write_text(json.dumps({"queries": len(queries), "rows": rows}, indent=1) + "\n")
    plot(rows, RESULTS / "ann-search.png")
    print(f"wrote {out}")


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["segments"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(sizes, [r["exact_p50_ms"] for r in rows], "o-", label="exact search")
    ax.plot(sizes, [r["p50_ms"] for r in rows], "o-", label="speechrag search (default)")
    ax.axhline(30, color="grey", ls=":", lw=1, label="30 ms target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("segments in the index")
    ax.set_ylabel("p50 ms per question")
    for r in rows:
        ax.annotate(f"recall@10 {r['recall_at_10']:.2f}", (r["segments"], r["p50_ms"]),
                    textcoords="offset points", xytext=(4, -12), fontsize=7)
    ax.legend(fontsize=8)
    ax.set_title("One written question, k = 10, 2 CPU cores")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
