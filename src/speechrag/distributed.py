"""Indexing on a Ray cluster: ``speechrag index PATH... --index DIR --ray [ADDRESS]``.

Ray Data spreads the files over a pool of workers (actors, each holding the index's model
once: CPU or GPU), which read, segment and encode a file at a time
(:func:`speechrag.index.file_rows`, the same code a local run uses); each file's rows come
back to this process, which commits them to the LanceDB index exactly as a local run
does: the file's rows in one commit, then its record. So the index is the same as a
single-process run would make, and a job that is killed resumes without duplicates
(files already recorded are skipped, a file in flight is redone). A worker that dies is
restarted and its file retried (``max_restarts``, ``max_task_retries``).

Each worker runs its model with as many threads as it has CPUs (``cpus_per_worker``);
the rows do not depend on it (Whisper's sampling fallback is seeded:
speechrag.retrievers.cascade), so a Ray run writes the rows a local run writes.

The index directory must be on a disk this process writes; the audio paths must be
readable by every worker under the same names (a shared file system on a multi-node
cluster). Without an address a local Ray is started with ``workers`` CPUs.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechrag.index import Index, file_rows
from speechrag.segment import SegmenterConfig

RETRIES = 3  # a dead worker is restarted, and its file retried, this many times


@dataclass(frozen=True)
class RayConfig:
    """How a Ray job runs: the cluster (None: a local Ray), workers (model copies), the
    CPUs and GPUs each takes, and the threads its model uses."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


class FileEncoder:
    """A Ray Data worker: loads the index's model once, then turns file rows
    ``{"path", "key"}`` into ``{"path", "error"}`` or the file's segment columns."""

    def __init__(self, spec: dict[str, Any], segmenter: dict[str, Any],
                 encoding: dict[str, Any], threads: int) -> None:
        import torch

        from speechrag.retrievers import from_spec

        torch.set_num_threads(max(1, threads))
        if spec.get("kind") in ("cascade", "gold-text"):  # CTranslate2's threads, not torch's
            spec = {**spec, "cpu_threads": max(1, threads)}  # the same vectors, any count
        self.retriever = from_spec(spec)
        if dict(self.retriever.encoding) != encoding:
            raise RuntimeError(f"this worker's model encodes with {self.retriever.encoding}, "
                               f"the index with {encoding}")
        self.segmenter = SegmenterConfig(**segmenter)

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        """One file -> one row of its segments' columns (the same columns when it failed,
        empty, with ``error`` saying why); vectors as raw float32 bytes."""
        rows = file_rows(item["path"], item["key"], self.segmenter, self.retriever)
        error, rows = (rows, []) if isinstance(rows, str) else ("", rows)
        vectors = np.stack([r["vector"] for r in rows]) if rows else np.zeros(0, np.float32)
        return {"path": item["path"], "error": error, "pid": os.getpid(),
                "ids": [r["id"] for r in rows], "starts": [r["start"] for r in rows],
                "ends": [r["end"] for r in rows], "texts": [r["text"] or "" for r in rows],
                "has_text": [r["text"] is not None for r in rows],
                "vectors": vectors.astype(np.float32).tobytes()}


def ray_encoder(index: Index, config: RayConfig,
                on_file: Callable[[str, float], None] | None = None
                ) -> Callable[[list[tuple[str, str]]], Iterator[tuple[str, list[dict] | str]]]:
    """An ``encode`` for :meth:`Index.add_files` that runs on Ray. ``on_file(path,
    seconds)`` is called as each file comes back."""

    def encode(todo: list[tuple[str, str]]) -> Iterator[tuple[str, list[dict] | str]]:
        if not todo:
            return
        try:
            import ray
        except ModuleNotFoundError:
            raise ValueError("--ray needs Ray: pip install 'speechrag[ray]' (or "
                             "'ray[data]==2.60.0')") from None

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-run INFO lines
        started = not ray.is_initialized()
        if started:
            ray.init(address=config.address, log_to_driver=False, include_dashboard=False,
                     logging_level=logging.WARNING,
                     **({} if config.address else {"num_cpus": max(
                         1, int(config.workers * config.cpus_per_worker))}))
        ray.data.DataContext.get_current().enable_progress_bars = False

        try:
            ds = ray.data.from_items([{"path": p, "key": k} for p, k in todo],
                                     override_num_blocks=len(todo))
            with warnings.catch_warnings():  # bounded retries have no named parameter yet
                warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
                ds = ds.map(  # a dead worker is restarted and its file retried
                    FileEncoder, fn_constructor_kwargs={
                        "spec": index.config.model, "segmenter": index.config.segmenter,
                        "encoding": index.config.encoding,
                        "threads": max(1, round(config.cpus_per_worker))},
                    compute=ray.data.ActorPoolStrategy(size=config.workers),
                    num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker or None,
                    max_restarts=RETRIES, max_task_retries=RETRIES)
            keys = dict(todo)
            for out in ds.iter_rows():
                path = out["path"]
                if out["error"]:
                    yield path, out["error"]
                    continue
                vectors = np.frombuffer(out["vectors"], dtype=np.float32).reshape(
                    -1, index.config.dim)
                rows = [{"id": i, "source": path, "path_key": keys[path], "start": float(a),
                         "end": float(b), "vector": v, "text": t if has else None}
                        for i, a, b, t, has, v in zip(out["ids"], out["starts"], out["ends"],
                                                      out["texts"], out["has_text"], vectors,
                                                      strict=True)]
                if on_file:
                    on_file(path, max(r["end"] for r in rows))
                yield path, rows
        finally:
            if started:
                ray.shutdown()

    return encode
