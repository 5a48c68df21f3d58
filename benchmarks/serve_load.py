"""Load and faults for ``speechrag serve``, only against 127.0.0.1.

    .venv/bin/python benchmarks/serve_load.py [--clients 50] [--seconds 60] [--docs 10000]

1. An index of ``--docs`` segments: WikiSpoken passages indexed as text documents (the
   cascade's text encoder; search cost depends on the rows and the query, not on whether
   a row came from audio), built once in the cache.
2. ``--clients`` threads search for ``--seconds`` (each sends its next question when the
   last is answered; questions are passage descriptions): requests, errors, QPS, p50 and
   p95 latency.
3. The same while another process indexes new documents into the same index.
4. The server is killed (-9) during load and restarted: seconds until it serves again,
   and whether the index is intact (same rows, same top hit for a fixed question).

The clients run in this process on the same 2 cores as the server, so the numbers are a
floor. Results: benchmarks/results/serve-load.json and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from wikispoken import RESULTS

import speechrag
from speechrag.assets import cache_dir
from speechrag.corpus.wikispoken import load_passages
from speechrag.index import Index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(index: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "speechrag.cli", "serve", "--index",
                             str(index), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(port, 300)
    return proc


def wait_up(port: int, timeout_s: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/index", timeout=2).read()
            return time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {timeout_s} s")


def load(port: int, questions: list[str], clients: int, seconds: float) -> dict:
    """``clients`` threads searching for ``seconds``; latency of every answered request."""
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client(n: int) -> None:
        rng = random.Random(n)
        while time.perf_counter() < stop:
            q = urllib.parse.quote(rng.choice(questions))
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/api/search?q={q}&k=10", timeout=60) as r:
                    r.read()
                    ok = r.status == 200
                    why = str(r.status)
            except (urllib.error.URLError, OSError) as err:
                ok, why = False, str(getattr(err, "code", None) or err)[:120]
            with lock:
                (latencies.append(time.perf_counter() - t0) if ok else errors.append(why))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    return {"clients": clients, "seconds": round(wall, 1), "requests": len(latencies),
            "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
            "qps": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1)
            if latencies else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--docs", type=int, default=10000)
    args = ap.parse_args(argv)

    passages = list(load_passages())
    ix = cache_dir() / "bench" / f"serve-load-{args.docs}"
    if not (ix / "index.json").exists():
        print(f"indexing {args.docs} passages as documents ...", flush=True)
        speechrag.index_texts([(p.passage_id, p.text) for p in passages[:args.docs]], ix)
    rows = len(Index.open(ix))
    questions = [p.description for p in passages if p.description][:2000]
    port = free_port()
    server = start(ix, port)
    report: dict = {"date": time.strftime("%Y-%m-%d"), "segments": rows,
                    "cpu_cores": os.cpu_count()}
    try:
        print(f"{args.clients} clients, {args.seconds:.0f} s, {rows} segments ...", flush=True)
        report["search"] = load(port, questions, args.clients, args.seconds)
        print(report["search"], flush=True)

        extra = Path(ix.parent / "serve-load-extra.jsonl")
        with open(extra, "w") as f:
            for i, p in enumerate(passages[:400]):
                f.write(json.dumps({"id": f"extra-{time.time_ns()}-{i}",
                                    "text": p.title + ". " + p.text}) + "\n")
        writer = subprocess.Popen([sys.executable, "-m", "speechrag.cli", "index-text",
                                   str(extra), "--index", str(ix)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        report["search_while_indexing"] = load(port, questions, args.clients, args.seconds)
        writer.communicate(timeout=1800)
        report["search_while_indexing"]["indexer_exit"] = writer.returncode
        report["search_while_indexing"]["rows_after"] = len(Index.open(ix))
        print(report["search_while_indexing"], flush=True)

        before = len(Index.open(ix))
        probe = urllib.parse.quote(questions[0])
        top = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/search?q={probe}&k=1").read())["hits"][0]["id"]
        killer = threading.Timer(args.seconds / 3, lambda: os.kill(server.pid, signal.SIGKILL))
        killer.start()
        during = load(port, questions, args.clients, args.seconds / 2)
        server.wait()
        t0 = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "speechrag.cli", "serve", "--index",
                                   str(ix), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_up(port, 300)
        again = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/search?q={probe}&k=1").read())["hits"][0]["id"]
        report["kill_9"] = {"requests_before_kill": during["requests"],
                            "errors_after_kill": during["errors"],
                            "restart_s": round(time.perf_counter() - t0, 1),
                            "rows_before": before, "rows_after": len(Index.open(ix)),
                            "same_top_hit": top == again,
                            "after_restart": load(port, questions, args.clients, 10)}
        print(report["kill_9"], flush=True)
    finally:
        server.terminate()
        server.wait()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve-load.json").write_text(json.dumps(report, indent=2) + "\n")
    s, w = report["search"], report["search_while_indexing"]
    print(f"\n| load ({report['segments']} segments, {args.clients} clients, "
          f"{args.seconds:.0f} s) | requests | errors | QPS | p50 | p95 |\n"
          "|---|---|---|---|---|---|")
    for name, r in (("search", s), ("search while indexing", w)):
        print(f"| {name} | {r['requests']} | {r['errors']} | {r['qps']} | {r['p50_ms']} ms | "
              f"{r['p95_ms']} ms |")


if __name__ == "__main__":
    main()
