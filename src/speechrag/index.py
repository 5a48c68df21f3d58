"""A persistent index of speech segments: one directory, an embedded LanceDB database.

Layout of an index directory::

    index.json        IndexConfig: the model spec, how audio was cut, the dimension,
                      what else shapes the vectors (the end-to-end models' encoder piece)
    .writer.lock      held (flock) by the one process adding files
    segments.lance    one row per segment: id, source, path_key, start, end, vector, text
                      (a text document is one row: source = its id, no start or end)
    files.lance       one row per fully indexed file: path_key, source, size, mtime_ns
    vector_index.json VectorIndexConfig: the ANN index over segments.vector, when there is one

Resumable and duplicate-free by construction: a file's segment rows are written
in one LanceDB commit (atomic), and only after that is the file recorded in
``files``. A run killed at any point (even ``kill -9``) leaves either nothing or
unrecorded rows for the file in progress; the next run deletes those rows and
indexes the file again. Files already recorded with the same size and mtime are
skipped; changed files are re-indexed only after their new version encoded
without error, so a corrupt replacement never loses what was stored.

Search is exact cosine top-k (a flat scan) until the index holds ANN_MIN_ROWS segments;
from then on LanceDB keeps an IVF-RaBitQ vector index (``vector_index.json`` says how it
was built) that each write extends and that is rebuilt once the table has doubled since;
rows not yet in it are still scanned exactly, so a search always sees everything written.
``exact=True`` (``speechrag search --exact``) bypasses it. Chosen and measured in
benchmarks/ann_search.py (docs/benchmarks.md, "Search at a million segments"). Hybrid
search re-ranks the cosine top candidates with a lexical match on their transcripts
(speechrag.lexical).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa

from speechrag.audio import AudioError
from speechrag.lexical import HybridConfig, LexicalScorer, rerank
from speechrag.retrievers import Retriever, canonical_spec, spec_of
from speechrag.segment import Segment, SegmenterConfig, segments

FORMAT_VERSION = 1
# Whisper's piece length for the end-to-end models in every index written before the
# config recorded it (it was fixed at 20 s): such an index opens as having it
LEGACY_PIECE_KINDS = ("clsr", "seal", "fusion")
LEGACY_PIECE_S = 20.0
CONFIG_FILE = "index.json"
LOCK_FILE = ".writer.lock"
ENCODE_BATCH = 8  # segments encoded at once: bounds memory to a few minutes of audio
TEXT_BATCH = 256  # text documents encoded and written per commit
TEXT_KEY = "text:"  # path_key prefix of text documents (audio files use real paths)
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".wma",
                    ".aiff", ".aif", ".webm", ".mp4", ".mkv"}


# An ANN index pays from here on: an exact scan of 20,000 384-d rows takes ~30 ms on 2
# cores and grows linearly (~160 ms at 100k, 1.4 s at 1M), the IVF-RaBitQ search ~5 ms.
ANN_MIN_ROWS = 20_000
ANN_FILE = "vector_index.json"


@dataclass(frozen=True)
class VectorIndexConfig:
    """The ANN index over the segment vectors (``vector_index.json``): IVF with sqrt(rows)
    partitions and RaBitQ codes, searched in ``nprobes`` partitions, the best
    ``refine_factor`` x k candidates re-scored with the exact vectors. On 1M segments
    (benchmarks/ann_search.py) this gives recall@10 0.97-0.98 against exact search at
    ~6 ms a query; IVF-PQ needed 4x the build time for the same recall and HNSW-SQ was
    2-3x slower to search."""

    rows: int  # segments when it was built; rebuilt when the table has doubled
    partitions: int
    type: str = "IVF_RQ"
    refine_factor: int = 10

    @property
    def nprobes(self) -> int:
        return max(64, self.partitions // 8)

    @classmethod
    def for_rows(cls, rows: int) -> VectorIndexConfig:
        return cls(rows=rows, partitions=max(1, round(math.sqrt(rows))))


class IndexConfigError(RuntimeError):
    """The index cannot be used as asked (wrong model, wrong window, not an index)."""


@dataclass(frozen=True)
class IndexConfig:
    """What an index says about how it was made. Stored as ``index.json``."""

    model: dict[str, Any]
    segmenter: dict[str, Any]
    dim: int
    format_version: int = FORMAT_VERSION
    # what else shapes the stored vectors (the retriever's ``encoding``: the Whisper
    # piece length of the end-to-end models); another value is refused, never mixed
    encoding: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One search result. ``start``/``end`` in seconds (None for text documents)."""

    source: str
    start: float | None
    end: float | None
    score: float
    text: str | None
    id: str = ""  # the segment's id in the index (``speechrag ask --context asr``, the server)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IndexReport:
    """What one ``add_files`` run did."""

    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    n_segments: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0


def collect_audio_files(paths: Iterable[str | Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files and folders (recursively, audio extensions only) in a stable order.

    Returns (files, problems) where problems are (path, reason) for paths that do not exist
    and folders without a single audio file (a mistyped folder is said, not indexed as 0).
    A file named explicitly is kept whatever its extension; reading it decides.
    """
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*")
                           if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                problems.append((str(p), "folder holds no audio files (looked for "
                                 f"{', '.join(sorted(AUDIO_EXTENSIONS))})"))
                continue
        elif path.exists():
            found = [str(path)]
        else:
            problems.append((str(p), "file not found"))
            continue
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, problems


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer of an index at a time (the resume logic assumes it), creation included.
    An OS lock: the kernel drops it when the holder dies, even by ``kill -9``, so it never
    goes stale."""
    with open(path / LOCK_FILE, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexConfigError(f"{path}: another process is indexing into it; "
                                   "wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _quote(value: str) -> str:
    """A string literal for a LanceDB filter (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _segments_schema(dim: int) -> pa.Schema:
    return pa.schema([
        pa.field("id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("path_key", pa.string()),
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("text", pa.string()),
    ])


def _columns(table: Any, columns: list[str]) -> pa.Table:
    """Some columns of every row, read without the vectors (``to_arrow`` reads them all:
    1.5 GB at a million 384-d segments; this reads path keys there in 0.3 s)."""
    return table.search().select(columns).limit(None).to_arrow()


KEEP_VERSIONS_S = 600  # old table versions outlive any reader by far (the server: 1 s)
TRANSCRIPTS = "transcripts"  # ASR text of segments, written by `ask --context asr`
TRANSCRIPTS_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("path_key", pa.string()),
    pa.field("asr", pa.string()),
    pa.field("text", pa.string()),
])

FILES_SCHEMA = pa.schema([
    pa.field("path_key", pa.string()),
    pa.field("source", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("n_segments", pa.int64()),
])


# files to do, as (path, path_key) -> (path, its rows, or why it failed), in any order
Encoder = Callable[[list[tuple[str, str]]], Iterator[tuple[str, "list[dict] | str"]]]


def file_rows(path: str, key: str, segmenter: SegmenterConfig, retriever: Retriever,
              on_progress: Callable[[str, float], None] | None = None) -> list[dict] | str:
    """One file's segment rows (id, source, path_key, start, end, vector, text), or the
    reason it cannot be indexed (unreadable audio, no segments). ENCODE_BATCH segments are
    encoded at a time from streamed audio, or all of a recording's windows at once for a
    retriever that transcribes whole recordings (the single-pass cascade; not with VAD
    segments, which never overlap). Ray workers call it too (speechrag.distributed)."""
    file_id = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    rows: list[dict] = []

    def add(segs: list[Segment], vectors: np.ndarray, texts: list[str | None]) -> None:
        for seg, vec, text in zip(segs, vectors, texts, strict=True):
            rows.append({"id": f"{file_id}:{round(seg.start_s * 1000)}", "source": path,
                         "path_key": key, "start": seg.start_s, "end": seg.end_s,
                         "vector": np.asarray(vec, dtype=np.float32), "text": text})
        if on_progress and segs:
            on_progress(path, segs[-1].end_s)

    try:
        if getattr(retriever, "whole_recordings", False) and not segmenter.vad:
            done = (lambda t: on_progress(path, t)) if on_progress else None
            add(*retriever.encode_recording(segments(path, segmenter), done))  # type: ignore[attr-defined]
        else:
            batch: list[Segment] = []
            for seg in segments(path, segmenter):
                batch.append(seg)
                if len(batch) == ENCODE_BATCH:
                    add(batch, *retriever.encode_segments(batch))
                    batch = []
            if batch:
                add(batch, *retriever.encode_segments(batch))
    except AudioError as err:
        return err.reason
    if not rows:
        return "no speech found" if segmenter.vad else "no audio segments"
    return rows


class Index:
    """An on-disk segment index. Open with :meth:`open` (existing) or :meth:`create`."""

    def __init__(self, path: Path, config: IndexConfig, refresh_s: float | None = None) -> None:
        self.path = path
        self.config = config
        self.db = lancedb.connect(str(path), read_consistency_interval=None
                                  if refresh_s is None else timedelta(seconds=refresh_s))
        self.segments = self.db.create_table(
            "segments", schema=_segments_schema(config.dim), exist_ok=True)
        self.files = self.db.create_table("files", schema=FILES_SCHEMA, exist_ok=True)
        self._lexical_cache: tuple[tuple[int, int, int], LexicalScorer] | None = None
        self.on_note: Callable[[str], None] | None = None  # long steps say so (the CLI prints)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, refresh_s: float | None = None) -> Index:
        """Open an existing index; a clear error if ``path`` is not one. ``refresh_s``: a
        long-lived reader (the server) sees what other processes write at most this many
        seconds late; None reads the index as it was when opened."""
        path = Path(path)
        cfg = path / CONFIG_FILE
        if not cfg.is_file():
            raise IndexConfigError(f"{path}: not a speechrag index (no {CONFIG_FILE})")
        try:
            data = json.loads(cfg.read_text())
            if "encoding" not in data and data.get("model", {}).get("kind") in LEGACY_PIECE_KINDS:
                data["encoding"] = {"piece_s": LEGACY_PIECE_S}  # written before it was kept
            config = IndexConfig(**data)
        except (json.JSONDecodeError, TypeError) as err:
            raise IndexConfigError(f"{cfg}: unreadable index config ({err})") from err
        if config.format_version != FORMAT_VERSION:
            raise IndexConfigError(f"{path}: index format {config.format_version}, this speechrag "
                              f"reads format {FORMAT_VERSION}")
        return cls(path, config, refresh_s)

    @classmethod
    def create(cls, path: str | Path, retriever: Retriever,
               segmenter: SegmenterConfig) -> Index:
        """Open the index at ``path`` for ``retriever``, creating it if needed.

        An existing index made by another model or cut another way is refused, never mixed.
        """
        path = Path(path)
        config = IndexConfig(model=spec_of(retriever), segmenter=segmenter.to_dict(),
                             dim=retriever.dim, encoding=dict(retriever.encoding))
        if (path / CONFIG_FILE).exists():
            return cls._existing(path, retriever, config)
        # what a creation writes before index.json (it comes last), or leaves if killed
        ours = {LOCK_FILE, CONFIG_FILE + ".tmp", "segments.lance", "files.lance"}

        def foreign() -> bool:  # not a folder of ours: refused before anything is written
            return path.exists() and (not path.is_dir() or any(
                p.name not in ours | {CONFIG_FILE} for p in path.iterdir()))

        if foreign():
            raise IndexConfigError(f"{path}: exists and is not a speechrag index; "
                                   "give --index a new or empty directory")
        path.mkdir(parents=True, exist_ok=True)
        with _locked(path):  # two runs creating one index: the second is told, not crashed
            if (path / CONFIG_FILE).exists():  # made while this process came to the lock
                return cls._existing(path, retriever, config)
            if foreign():
                raise IndexConfigError(f"{path}: exists and is not a speechrag index; "
                                       "give --index a new or empty directory")
            index = cls(path, config)  # the tables first: an index.json always has them
            tmp = path / (CONFIG_FILE + ".tmp")
            tmp.write_text(json.dumps(asdict(config), indent=2) + "\n")
            os.replace(tmp, path / CONFIG_FILE)
        return index

    @classmethod
    def _existing(cls, path: Path, retriever: Retriever, config: IndexConfig) -> Index:
        """The index at ``path``, if it was made by ``retriever`` and cut as ``config``
        says; an IndexConfigError otherwise."""
        index = cls.open(path)
        index.check_retriever(retriever)
        if index.config.segmenter != config.segmenter:
            raise IndexConfigError(
                f"{path}: index was cut with {index.config.segmenter}, not "
                f"{config.segmenter}; use the same --window/--hop/--vad or a new --index")
        return index

    def check_model(self, spec: dict[str, Any]) -> None:
        if canonical_spec(spec) != canonical_spec(self.config.model):
            raise IndexConfigError(
                f"{self.path}: index was built with model {self.config.model}, not {spec}; "
                "search it with the model that built it, or index into a new directory")

    def check_retriever(self, retriever: Retriever) -> None:
        """The retriever is the index's model and encodes audio as the index's vectors
        were encoded (the same Whisper piece length), or an IndexConfigError says why."""
        self.check_model(spec_of(retriever))
        if dict(retriever.encoding) != self.config.encoding:
            raise IndexConfigError(
                f"{self.path}: index vectors were encoded with {self.config.encoding}, and "
                f"this retriever encodes with {dict(retriever.encoding)}: their vectors "
                "would not match; use the same settings or a new --index")

    # -- writing -----------------------------------------------------------------------------

    def _recorded(self) -> dict[str, tuple[int, int]]:
        rows = self.files.to_arrow().select(["path_key", "size", "mtime_ns"]).to_pylist()
        return {r["path_key"]: (r["size"], r["mtime_ns"]) for r in rows}

    def add_files(
        self,
        paths: list[str],
        retriever: Retriever | None,
        on_progress: Callable[[str, float], None] | None = None,
        on_skip: Callable[[str, str], None] | None = None,
        encode: Encoder | None = None,
    ) -> IndexReport:
        """Index audio files, each on its own: one bad file is reported, never fatal.

        on_progress(path, seconds_of_audio_done) is called as segments are encoded;
        on_skip(path, reason) when a file cannot be indexed. ``encode`` encodes the files
        elsewhere (:mod:`speechrag.distributed`: on a Ray cluster; ``retriever`` may then
        be None): given the files to do as (path, path_key), it yields (path, rows or the
        reason the file failed) in any order, and each file is committed here as it comes.
        """
        if retriever is not None:
            self.check_retriever(retriever)
        if encode is None:
            if retriever is None:
                raise ValueError("add_files needs a retriever or an encoder")
            segmenter = SegmenterConfig(**self.config.segmenter)

            def encode(todo: list[tuple[str, str]]) -> Iterator[tuple[str, list[dict] | str]]:
                for path, key in todo:
                    yield path, file_rows(path, key, segmenter, retriever, on_progress)

        with _locked(self.path):
            return self._add_files(paths, encode, on_skip)

    def _add_files(self, paths: list[str], encode: Encoder,
                   on_skip: Callable[[str, str], None] | None) -> IndexReport:
        report = IndexReport()
        self._sweep_orphans()
        recorded = self._recorded()
        t0 = time.perf_counter()

        def failed(path: str, why: str) -> None:
            report.failed.append((path, why))
            if on_skip:
                on_skip(path, why)

        todo: dict[str, tuple[str, tuple[int, int]]] = {}
        for path in paths:
            key = os.path.realpath(path)
            try:
                st = os.stat(path)
            except OSError as err:
                failed(path, err.strerror or str(err))
                continue
            fingerprint = (st.st_size, st.st_mtime_ns)
            if recorded.get(key) == fingerprint:
                report.unchanged.append(path)
            else:
                todo[path] = (key, fingerprint)
        for path, rows in encode([(p, k) for p, (k, _) in todo.items()]):
            if isinstance(rows, str):
                failed(path, rows)
                continue
            key, fingerprint = todo[path]
            # Forget the file first, then replace its rows, then record it: a kill anywhere
            # in between leaves the file unrecorded, so the next run redoes exactly it.
            self.files.delete(f"path_key = {_quote(key)}")
            self.segments.delete(f"path_key = {_quote(key)}")
            self._forget_transcripts(f"path_key = {_quote(key)}")
            self.segments.add(pa.Table.from_pylist(rows, schema=self.segments.schema))
            self.files.add(pa.Table.from_pylist(
                [{"path_key": key, "source": path, "size": fingerprint[0],
                  "mtime_ns": fingerprint[1], "n_segments": len(rows)}], schema=FILES_SCHEMA))
            report.indexed.append(path)
            report.n_segments += len(rows)
            report.audio_s += max(r["end"] for r in rows)
        report.wall_s = time.perf_counter() - t0
        if report.indexed:
            self.compact()
        return report

    def add_texts(self, docs: list[tuple[str, str]], retriever: Retriever,
                  on_progress: Callable[[int], None] | None = None) -> IndexReport:
        """Index text documents ``(id, text)``: one row each (source = id, no times), so
        spoken or written queries can retrieve text. A document already stored with the
        same text is skipped; one with new text replaces its row. Written in chunks; a
        killed run loses nothing stored and the next run redoes what is missing.

        on_progress(n) is called with the number of documents written so far.
        """
        self.check_retriever(retriever)
        ids = [d for d, _ in docs]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"document id {dup!r} appears more than once")
        report = IndexReport()
        t0 = time.perf_counter()
        with _locked(self.path):
            stored = {r["path_key"]: r["text"] for r in self.segments.search()
                      .where("path_key LIKE 'text:%'").select(["path_key", "text"])
                      .limit(None).to_list()}
            todo = []
            for doc_id, text in docs:
                if stored.get(TEXT_KEY + doc_id) == text:
                    report.unchanged.append(doc_id)
                else:
                    todo.append((doc_id, text))
            for i in range(0, len(todo), TEXT_BATCH):
                chunk = todo[i:i + TEXT_BATCH]
                vectors = retriever.encode_text([t for _, t in chunk])
                keys = [TEXT_KEY + d for d, _ in chunk]
                rows = [{"id": key, "source": d, "path_key": key, "start": None, "end": None,
                         "vector": np.asarray(v, dtype=np.float32), "text": t}
                        for key, (d, t), v in zip(keys, chunk, vectors, strict=True)]
                self.segments.delete(f"path_key IN ({', '.join(_quote(k) for k in keys)})")
                self.segments.add(pa.Table.from_pylist(rows, schema=self.segments.schema))
                report.indexed += [d for d, _ in chunk]
                report.n_segments += len(rows)
                if on_progress:
                    on_progress(len(report.indexed))
            if report.indexed:
                self.compact()
        report.wall_s = time.perf_counter() - t0
        return report

    def remove(self, names: list[str]) -> tuple[list[str], list[str]]:
        """Take files (by path, as given or as indexed) or text documents (by id) out of
        the index -> (removed, not found). Each one goes in two commits: its record, then
        all its rows in one; a run killed between them leaves rows of no recorded file,
        which ``speechrag info`` reports and the next write of any kind (``remove``,
        ``index``) deletes first, so the index never holds half a file for long and never
        a recorded file without its rows."""
        removed, missing = [], []
        with _locked(self.path):
            swept = set(self._sweep_orphans())  # a cut remove's rows: that remove is done
            files = {r["path_key"]: r["source"] for r in self.files.to_arrow()
                     .select(["path_key", "source"]).to_pylist()}
            by_source = {source: key for key, source in files.items()}
            for name in names:
                key = by_source.get(name) or os.path.realpath(name)
                candidates = [key, TEXT_KEY + name]
                where = f"path_key IN ({', '.join(_quote(k) for k in candidates)})"
                if key in swept:
                    removed.append(name)
                    continue
                if key not in files and not self.segments.count_rows(where):
                    missing.append(name)
                    continue
                self.files.delete(where)  # first the record: never a recorded file without rows
                self.segments.delete(where)
                self._forget_transcripts(where)
                removed.append(name)
            if removed or swept:
                self.compact()
        return removed, missing

    def _sweep_orphans(self) -> list[str]:
        """Delete the segment rows of no recorded audio file (what a run killed between
        two commits leaves) -> the path keys whose rows went. Writers call it under the
        lock."""
        keys = set(_columns(self.segments, ["path_key"]).column("path_key").to_pylist())
        recorded = {r["path_key"] for r in self.files.to_arrow().select(["path_key"])
                    .to_pylist()}
        orphans = sorted(k for k in keys - recorded if not k.startswith(TEXT_KEY))
        if orphans:
            where = f"path_key IN ({', '.join(_quote(k) for k in orphans)})"
            self.segments.delete(where)
            self._forget_transcripts(where)
        return orphans

    def summary(self) -> dict[str, Any]:
        """What an index holds, for ``speechrag info`` and the server: the model, files,
        text documents, hours of audio, segments, when it was created and last written,
        how it is searched, and rows of no recorded file (a killed run's leftovers)."""
        rows = _columns(self.segments, ["path_key", "end"]).to_pylist()
        files = {r["path_key"] for r in self.files.to_arrow().select(["path_key"]).to_pylist()}
        ends: dict[str, float] = {}
        for r in rows:
            if not r["path_key"].startswith(TEXT_KEY):
                ends[r["path_key"]] = max(ends.get(r["path_key"], 0.0), r["end"] or 0.0)
        written = [p.stat().st_mtime for p in self.path.rglob("*") if p.is_file()]
        return {
            "index": str(self.path), "model": self.config.model, "dim": self.config.dim,
            "segmenter": self.config.segmenter, "encoding": self.config.encoding,
            "files": len(files),
            "documents": sum(r["path_key"].startswith(TEXT_KEY) for r in rows),
            "audio_hours": sum(v for k, v in ends.items() if k in files) / 3600,
            "segments": len(rows),
            "orphan_segments": sum(1 for r in rows if not r["path_key"].startswith(TEXT_KEY)
                                   and r["path_key"] not in files),
            "created": _iso((self.path / CONFIG_FILE).stat().st_mtime),
            "updated": _iso(max(written)),
            "search": self.search_mode(),
        }

    # -- the vector index ----------------------------------------------------------------------

    def vector_index(self) -> VectorIndexConfig | None:
        """How the ANN index was built, if the table has one (else exact search)."""
        cfg = self.path / ANN_FILE
        if not cfg.is_file() or not any(i.columns == ["vector"]
                                        for i in self.segments.list_indices()):
            return None
        try:
            return VectorIndexConfig(**json.loads(cfg.read_text()))
        except (json.JSONDecodeError, TypeError):
            return None  # unreadable: searched exactly, rebuilt by the next write

    def search_mode(self) -> str:
        """How a search runs now, in words (``speechrag info``)."""
        ann = self.vector_index()
        if ann is None:
            return f"exact cosine (a vector index is built from {ANN_MIN_ROWS:,} segments)"
        name = self._vector_index_name()
        stats = self.segments.index_stats(name) if name else None
        waiting = stats.num_unindexed_rows if stats is not None else 0
        return (f"{ann.type} vector index ({ann.partitions} partitions, {ann.nprobes} probed"
                f"{f', {waiting:,} new segments scanned exactly' if waiting else ''}); "
                "--exact for exact cosine")

    def _vector_index_name(self) -> str | None:
        return next((i.name for i in self.segments.list_indices()
                     if i.columns == ["vector"]), None)

    def maintain_vector_index(self, force: bool = False) -> bool:
        """Build the ANN index once the table holds ANN_MIN_ROWS segments, and again when it
        has doubled since (sqrt(rows) partitions stay right for the size). Writers call it
        (under the lock) after each write; rows written since the last build were already
        added to it by :meth:`compact`. -> whether it built one."""
        rows = self.segments.count_rows()
        current = self.vector_index()
        if not force and (rows < ANN_MIN_ROWS or (current is not None
                                                  and rows < 2 * current.rows)):
            return False
        from lancedb.index import IvfRq

        config = VectorIndexConfig.for_rows(rows)
        if self.on_note is not None:
            self.on_note(f"building the vector index over {rows:,} segments "
                         f"(about {max(1, round(rows / 20_000))} s on 2 cores) ...")
        tmp = self.path / (ANN_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(config), indent=2) + "\n")
        self.segments.create_index("vector", replace=True, config=IvfRq(
            distance_type="cosine", num_partitions=config.partitions))
        os.replace(tmp, self.path / ANN_FILE)  # after the index: a kill before leaves none
        return True

    # -- transcripts stored back by `ask --context asr` ---------------------------------------

    def _transcripts_table(self) -> Any:
        """The transcripts table, or None before anything was stored (opening an index
        never writes to it)."""
        try:
            return self.db.open_table(TRANSCRIPTS)
        except ValueError:  # "Table 'transcripts' was not found"
            return None

    def transcripts(self, ids: list[str], asr: str) -> dict[str, str]:
        """Stored ASR transcripts of these segment ids by this ASR model: id -> text."""
        table = self._transcripts_table()
        if table is None or not ids:
            return {}
        where = (f"asr = {_quote(asr)} AND id IN ({', '.join(_quote(i) for i in ids)})")
        rows = table.search().where(where).select(["id", "text"]).limit(None).to_list()
        return {r["id"]: r["text"] for r in rows}

    def store_transcripts(self, texts: dict[str, str], asr: str) -> bool:
        """Keep ASR transcripts of segments (id -> text) for later questions. One append
        (atomic: an interrupted one leaves nothing half-written, and the segment rows are
        never touched). Skipped, returning False, while another process writes the
        index (its indexing may be replacing these very segments)."""
        try:
            with _locked(self.path):
                keys = {r["id"]: r["path_key"] for r in self.segments.search()
                        .where(f"id IN ({', '.join(_quote(i) for i in texts)})")
                        .select(["id", "path_key"]).limit(None).to_list()}
                rows = [{"id": i, "path_key": keys[i], "asr": asr, "text": t}
                        for i, t in texts.items() if i in keys]
                if not rows:
                    return False
                table = self._transcripts_table()
                if table is None:
                    table = self.db.create_table(TRANSCRIPTS, schema=TRANSCRIPTS_SCHEMA,
                                                 exist_ok=True)
                table.delete(f"asr = {_quote(asr)} AND id IN "
                             f"({', '.join(_quote(r['id']) for r in rows)})")
                table.add(pa.Table.from_pylist(rows, schema=TRANSCRIPTS_SCHEMA))
                return True
        except IndexConfigError:
            return False

    def _forget_transcripts(self, where: str) -> None:
        table = self._transcripts_table()
        if table is not None:
            table.delete(where)

    def compact(self) -> None:
        """Merge the small per-file fragments (keeps search fast) and drop versions older
        than KEEP_VERSIONS_S: a reader in another process (the server, a search) may be
        reading the version just replaced, and its files must still be there."""
        with warnings.catch_warnings():  # one writer by design: old versions are garbage
            warnings.simplefilter("ignore", UserWarning)
            for table in (self.segments, self.files):  # also adds new rows to the ANN index
                table.optimize(cleanup_older_than=timedelta(seconds=KEEP_VERSIONS_S))
        self.maintain_vector_index()

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.segments.count_rows()

    def indexed_files(self) -> list[str]:
        return sorted(self.files.to_arrow().column("source").to_pylist())

    def segment(self, segment_id: str) -> dict | None:
        """One segment's row (id, source, start, end, text) by its id, or None."""
        rows = (self.segments.search().where(f"id = {_quote(segment_id)}")
                .select(["id", "source", "start", "end", "text"]).limit(1).to_list())
        return rows[0] if rows else None

    def rows(self, columns: tuple[str, ...] = ("source", "start", "end", "text")) -> list[dict]:
        """All segment rows (without vectors unless asked), sorted by source and start."""
        table = _columns(self.segments, list(columns)).to_pylist()
        return sorted(table, key=lambda r: (r.get("source"), r.get("start")))

    def search(self, vectors: np.ndarray, k: int = 10, texts: list[str] | None = None,
               hybrid: HybridConfig | None = None, exact: bool = False) -> list[list[Hit]]:
        """vectors: (Q, dim) unit norm -> Q lists of up to k hits, best first, by cosine:
        through the ANN index when the index has one (:class:`VectorIndexConfig`), or an
        exact scan (always with ``exact``).

        With ``hybrid`` (weight > 0) and the queries' ``texts`` (Q,), the best
        ``hybrid.candidates`` hits by cosine are re-ranked by cosine + weight x the lexical
        match of the query text to each hit's transcript (speechrag.lexical), and a hit's
        score is that sum."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != self.config.dim:
            raise IndexConfigError(f"query vectors have dim {vectors.shape[1]}, "
                              f"index has {self.config.dim}")
        hybrid = hybrid if hybrid is not None and hybrid.active else None
        if hybrid is not None and (texts is None or len(texts) != len(vectors)):
            raise ValueError("hybrid search needs each query's text beside its vector")
        scorer = self.lexical_scorer(hybrid) if hybrid is not None else None
        limit = max(k, hybrid.candidates) if hybrid is not None else k
        ann = None if exact else self.vector_index()
        results: list[list[Hit]] = []
        for n, v in enumerate(vectors):
            query = self.segments.search(v).distance_type("cosine").limit(limit)
            if ann is None:
                query = query.bypass_vector_index()
            else:
                query = query.nprobes(ann.nprobes).refine_factor(ann.refine_factor)
            found = query.select(["id", "source", "start", "end", "text", "_distance"]).to_list()
            cosine = np.array([1.0 - float(r["_distance"]) for r in found], dtype=np.float32)
            order, scores = np.arange(len(found)), cosine
            if scorer is not None:
                assert hybrid is not None and texts is not None
                lexical = scorer.scores(texts[n], [r["id"] for r in found])
                order, scores = rerank(cosine, lexical, hybrid.weight)
            results.append([Hit(found[i]["source"], found[i]["start"], found[i]["end"],
                                float(scores[i]), found[i]["text"], found[i]["id"])
                            for i in order[:k]])
        return results

    def lexical_scorer(self, hybrid: HybridConfig) -> LexicalScorer:
        """The TF-IDF of every transcript in the index, fitted on first use and again
        whenever the table has changed since (keyed by its LanceDB version)."""
        key = (self.segments.version, hybrid.ngram_min, hybrid.ngram_max)
        if self._lexical_cache is None or self._lexical_cache[0] != key:
            rows = _columns(self.segments, ["id", "text"]).to_pydict()
            try:
                scorer = LexicalScorer(rows["id"], rows["text"], hybrid)
            except ValueError as err:
                raise IndexConfigError(f"{self.path}: {err}") from err
            self._lexical_cache = (key, scorer)
        return self._lexical_cache[1]
