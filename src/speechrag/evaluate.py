"""The one evaluator: every system indexes the same corpus audio, answers the same
queries, and is scored by the same metric code (speechrag.metrics).

Report fields: retrieval R@1/5/10 and MRR (overall, per query kind, per voice),
indexing wall time and real-time factor, query latency p50/p95 (encode the query
+ exact search), and WER of the stored transcripts where the model makes them.

Queries are written (``queries.jsonl``) or spoken (``spoken_queries.jsonl``, see
``speechrag corpus speak-queries``). Targets are the corpus's recordings, or, for a
corpus of layout "queries", its passages as text documents: then a hit is correct
when its source is the query's passage.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from speechrag.corpus.build import Corpus
from speechrag.index import CONFIG_FILE, Index, IndexConfigError
from speechrag.lexical import HybridConfig
from speechrag.metrics import first_correct_rank, percentile, retrieval_summary, wer
from speechrag.retrievers import Retriever, load_retriever, spec_of
from speechrag.retrievers.gold_text import GoldTextRetriever, words_between
from speechrag.segment import SegmenterConfig

GOLD_TEXT = "gold-text"  # the clean-text upper bound: same windows, reference words
TIMING_FILE = "timing.json"  # cumulative indexing time of an index, across resumed runs


RUN_FILES = ("model", "last")  # what `speechrag train` writes into every run folder


def safe_name(model: str) -> str:
    """A model name or path as a file-name part: ``models/x.json`` -> ``x``; a training
    run's own ``runs/abl-cos/model.pt`` -> ``abl-cos-model``, so two runs' checkpoints
    get two indexes and two reports."""
    path = Path(model)
    name = path.stem
    if name in RUN_FILES and path.parent.name not in ("", ".", ".."):
        name = f"{path.parent.name}-{name}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def retriever_for(model: str, corpus: Corpus) -> Retriever:
    """``gold-text`` needs the corpus; every other model loads by name or path."""
    if model == GOLD_TEXT:
        spoken: dict[str, list[tuple[float, float, str]]] = {}
        for m in corpus.manifest:
            spoken.setdefault(str(corpus.root / m["audio"]), []).append(
                (m["start"], m["end"], m["text"]))
        return GoldTextRetriever(spoken=spoken)
    return load_retriever(model)


def non_overlapping_cover(rows: list[dict]) -> list[dict]:
    """Segments of one recording that do not overlap, taken greedily in time order:
    with hop = window / 2 this is every other window, so each word is counted once."""
    cover: list[dict] = []
    for r in sorted(rows, key=lambda r: r["start"]):
        if not cover or r["start"] >= cover[-1]["end"] - 1e-6:
            cover.append(r)
    return cover


def transcript_wer(index: Index, corpus: Corpus) -> float | None:
    """WER of the index's stored transcripts, per recording, over the time its
    non-overlapping cover spans (the reference words there come from
    :func:`words_between`; the tail a cover may leave out is not scored)."""
    rows = index.rows()
    if not rows or all(r["text"] is None for r in rows):
        return None
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(os.path.realpath(r["source"]), []).append(r)
    spoken: dict[str, list[tuple[float, float, str]]] = {}
    for m in corpus.manifest:
        spoken.setdefault(os.path.realpath(corpus.root / m["audio"]), []).append(
            (m["start"], m["end"], m["text"]))
    refs, hyps = [], []
    for source, segs in by_source.items():
        cover = non_overlapping_cover(segs)
        refs.append(" ".join(words_between(spoken.get(source, []), r["start"], r["end"])
                             for r in cover))
        hyps.append(" ".join(r["text"] or "" for r in cover))
    return wer(refs, hyps)


def _open_fresh(index_dir: Path, retriever: Retriever, segmenter: SegmenterConfig) -> Index:
    """Index.create, except that the evaluator's own cached index made by another
    checkpoint under the same name (a release ships a retrained ``seal``) or cut another
    way is deleted with a warning and started afresh: it is a cache of this evaluation,
    and reusing it would score the wrong model."""
    try:
        return Index.create(index_dir, retriever, segmenter)
    except (IndexConfigError, ValueError) as err:  # ValueError: a spec this version lacks
        if not (index_dir / CONFIG_FILE).exists():
            raise  # not an index this evaluator made: leave it alone
        warnings.warn(f"{index_dir}: stale evaluation index ({str(err).split('; ')[0]}); "
                      "indexing afresh", stacklevel=3)
    shutil.rmtree(index_dir)
    return Index.create(index_dir, retriever, segmenter)


def build_index(corpus: Corpus, retriever: Retriever, index_dir: Path,
                segmenter: SegmenterConfig,
                on_progress: Callable[[str, float], None] | None = None) -> tuple[Index, dict]:
    """Index the corpus audio (resuming a partial index) and return cumulative timing."""
    index = _open_fresh(index_dir, retriever, segmenter)
    timing_file = index_dir / TIMING_FILE
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else \
        {"wall_s": 0.0, "audio_s": 0.0, "n_segments": 0}
    report = index.add_files(corpus.audio_files(), retriever, on_progress=on_progress)
    if report.failed:
        raise ValueError("corpus audio could not be indexed: "
                           + "; ".join(f"{p}: {why}" for p, why in report.failed))
    if report.indexed:
        timing = {"wall_s": timing["wall_s"] + report.wall_s,
                  "audio_s": timing["audio_s"] + report.audio_s,
                  "n_segments": timing["n_segments"] + report.n_segments}
        timing_file.write_text(json.dumps(timing) + "\n")
    return index, timing


def build_document_index(corpus: Corpus, retriever: Retriever, index_dir: Path
                         ) -> tuple[Index, dict]:
    """Index a "queries" corpus's passages as text documents; timing as for audio."""
    index = _open_fresh(index_dir, retriever, SegmenterConfig())
    report = index.add_texts([(d["id"], d["text"]) for d in corpus.documents], retriever)
    timing_file = index_dir / TIMING_FILE
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else \
        {"wall_s": 0.0, "audio_s": 0.0, "n_segments": 0}
    if report.indexed:
        timing = {"wall_s": timing["wall_s"] + report.wall_s, "audio_s": 0.0,
                  "n_segments": timing["n_segments"] + report.n_segments}
        timing_file.write_text(json.dumps(timing) + "\n")
    return index, timing


def evaluate(corpus: Corpus, model: str, out: str | Path, k: int = 10,
             segmenter: SegmenterConfig | None = None,
             retriever: Retriever | None = None,
             on_progress: Callable[[str, float], None] | None = None,
             spoken: bool = False, hybrid: HybridConfig | None = None) -> dict[str, Any]:
    """Index ``corpus`` with ``model`` into ``out/index-<model>`` and score its queries
    (written, or spoken with ``spoken=True``); with ``hybrid``, the dense hits are
    re-ranked with the lexical match of each question (a spoken one: what the model heard)
    to the transcripts (speechrag.lexical), on the same index."""
    from speechrag.audio import load_query_audio

    segmenter = segmenter or SegmenterConfig()
    hybrid = hybrid if hybrid is not None and hybrid.active else None
    queries = corpus.spoken_queries if spoken else corpus.queries
    if spoken and not queries:
        raise ValueError(f"{corpus.root}: no spoken queries; make them with `speechrag corpus "
                         f"speak-queries --corpus {corpus.root}`")
    documents = corpus.config.get("layout") == "queries"
    retriever = retriever or retriever_for(model, corpus)
    index_dir = Path(out) / f"index-{safe_name(model)}"
    if documents:
        index, timing = build_document_index(corpus, retriever, index_dir)
    else:
        index, timing = build_index(corpus, retriever, index_dir, segmenter, on_progress)

    fit_s = 0.0
    if hybrid is not None:  # the TF-IDF is fitted once per opened index, before any query
        t0 = time.perf_counter()
        index.lexical_scorer(hybrid)
        fit_s = time.perf_counter() - t0
    gold = corpus.gold()
    ranks: list[int | None] = []
    per_query: list[dict] = []
    latencies_ms: list[float] = []
    for q in queries:
        samples = load_query_audio(q["audio"]) if spoken else None
        t0 = time.perf_counter()
        if samples is not None:  # what the model heard is the spoken question's words
            vec, heard = retriever.encode_query_audio([samples])
            words = heard[0] or ""
        else:
            vec, words = retriever.encode_text([q["text"]]), q["text"]
        hits = index.search(vec, k, [words], hybrid)[0]
        latencies_ms.append((time.perf_counter() - t0) * 1000)
        if documents:
            rank = next((i for i, h in enumerate(hits, start=1)
                         if h.source == q["passage_id"]), None)
            voice = q.get("voice", "text")
        else:
            occurrences = gold[q["passage_id"]]
            rank = first_correct_rank(
                [(os.path.realpath(h.source), h.start, h.end) for h in hits],
                [(os.path.realpath(o["audio"]), o["start"], o["end"]) for o in occurrences])
            voice = q["voice"] if spoken else occurrences[0]["voice"]
        ranks.append(rank)
        per_query.append({"id": q["id"], "kind": q["kind"], "voice": voice, "rank": rank})

    def summary(key: str) -> dict[str, dict]:
        groups: dict[str, list[int | None]] = {}
        for r in per_query:
            groups.setdefault(r[key], []).append(r["rank"])
        return {g: retrieval_summary(v) for g, v in sorted(groups.items())}

    return {
        "model": model,
        "queries_spoken": spoken,
        "targets": "text documents" if documents else "recordings",
        "model_spec": spec_of(retriever),
        "hybrid": None if hybrid is None else {**hybrid.to_dict(), "fit_s": fit_s},
        "corpus": str(corpus.root),
        "index": str(index_dir),
        "corpus_config": corpus.config,
        "segmenter": segmenter.to_dict(),
        "k": k,
        "retrieval": {"overall": retrieval_summary(ranks), "by_kind": summary("kind"),
                      "by_voice": summary("voice")},
        "indexing": {**timing, "rtf": None if documents else
                     timing["wall_s"] / max(timing["audio_s"], 1e-9)},
        "query_latency_ms": {"p50": percentile(latencies_ms, 50),
                             "p95": percentile(latencies_ms, 95)},
        "wer": None if documents else transcript_wer(index, corpus),
        "queries": per_query,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_eval(corpus: Corpus, model: str, out: str | Path, k: int = 10,
             segmenter: SegmenterConfig | None = None, spoken: bool = False,
             hybrid: float = 0.0, on_progress: Callable[[str, float], None] | None = None
             ) -> tuple[dict[str, Any], Path, Path]:
    """:func:`evaluate`, then write its report and redraw the comparison chart of every
    report in ``out``: -> (report, report path, chart path)."""
    from speechrag.report import plot_reports, write_report

    report = evaluate(corpus, model, out, k=k, segmenter=segmenter, on_progress=on_progress,
                      spoken=spoken, hybrid=HybridConfig(weight=hybrid))
    return report, write_report(report, out), plot_reports(out)
