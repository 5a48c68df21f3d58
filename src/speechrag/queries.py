"""Questions as users give them: a queries file, written and spoken questions, and their
vectors from an index's own retriever (the CLI, the Python API and the evaluator share
this)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from speechrag.audio import AudioError, load_query_audio
from speechrag.jsonl import BadLine, read_jsonl


def read_queries(path: Path) -> list[dict]:
    """A queries JSONL file, one query per line: ``{"id": ..., "text": "..."}`` or a spoken
    one, ``{"id": ..., "audio": "PATH"}`` (relative to the file's folder). Blank lines
    are ignored; a malformed line is an error naming its line number."""
    queries = []
    for n, q in read_jsonl(path, "queries file"):
        if isinstance(q, BadLine):
            raise ValueError(f"{q.where}: {q.reason}")
        if isinstance(q, dict) and isinstance(q.get("audio"), str) and q["audio"].strip():
            audio = Path(q["audio"]).expanduser()
            queries.append({"id": q.get("id", n),
                            "audio": str(audio if audio.is_absolute() else path.parent / audio)})
            continue
        if not isinstance(q, dict) or not isinstance(q.get("text"), str) or not q["text"].strip():
            raise ValueError(f'{path}:{n}: expected {{"id": ..., "text": "..."}} '
                             'or {"id": ..., "audio": "PATH"} with a non-empty value')
        queries.append({"id": q.get("id", n), "text": q["text"]})
    if not queries:
        raise ValueError(f"{path}: no queries")
    return queries


def encode_queries(retriever: Any, queries: list[dict],
                   on_skip: Callable[[dict, str], None] | None = None
                   ) -> tuple[list[dict], np.ndarray, list[str]]:
    """Text and spoken queries -> (the queries that could be encoded, their vectors
    (Q, dim), their words: the text, or what the model heard in the audio ("" if it
    writes nothing)). A spoken query whose file cannot be read is passed to
    ``on_skip(query, reason)`` and left out, never fatal to the others; if none is left
    that is an error."""
    kept, samples = [], []
    for q in queries:
        if "audio" not in q:
            kept.append(q)
            continue
        try:
            samples.append(load_query_audio(q["audio"]))
            kept.append(q)
        except AudioError as e:
            if on_skip:
                on_skip(q, str(e))
    if not kept:
        raise ValueError("no query could be read")
    texts = [q["text"] for q in kept if "audio" not in q]
    text_vecs = retriever.encode_text(texts) if texts else None
    audio_vecs, heard = retriever.encode_query_audio(samples) if samples else (None, [])
    vecs = np.zeros((len(kept), retriever.dim), dtype=np.float32)
    words: list[str] = []
    ti = ai = 0
    for i, q in enumerate(kept):
        if "audio" in q:
            vecs[i] = audio_vecs[ai]  # type: ignore[index]
            words.append(heard[ai] or "")
            ai += 1
        else:
            vecs[i] = text_vecs[ti]  # type: ignore[index]
            words.append(q["text"])
            ti += 1
    return kept, vecs, words
