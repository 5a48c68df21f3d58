"""Spoken queries and text documents: speech -> text, speech -> speech, through the CLI,
with the real tiny.en cascade (ASR on the query, then text retrieval)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import speechrag
from speechrag.cli import app
from speechrag.index import Index

from .conftest import TOPICS, speak, write_wav

runner = CliRunner()


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> Path:
    """Two spoken questions in an evaluation-free voice of the test set-up."""
    root = tmp_path_factory.mktemp("spoken-queries")
    speak("which instrument has four strings and a bow", root / "violin-q.wav", "flite:kal")
    speak("what is made from flour and water in an oven", root / "bread-q.wav", "flite:kal")
    return root


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory) -> Path:
    docs = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    lines = [json.dumps({"id": name, "text": text}) for name, text in TOPICS.items()]
    docs.write_text("\n".join(lines[:2]) + "\n{broken\n" + lines[2] + "\n"
                    + json.dumps({"id": "empty", "text": " "}) + "\n"
                    + json.dumps({"id": "bread", "text": "a repeated id"}) + "\n")
    ix = docs.parent / "ix"
    result = runner.invoke(app, ["index-text", str(docs), "--index", str(ix),
                                 "--model", "cascade-tiny"])
    assert result.exit_code == 0, result.output
    assert "docs.jsonl:3" in result.output and "docs.jsonl:5" in result.output  # reported
    assert "docs.jsonl:6: id 'bread' already used on line" in result.output  # the first stays
    assert "indexed 3 document(s)" in result.output
    return ix


def test_text_documents_are_stored_once(docs_index: Path) -> None:
    index = Index.open(docs_index)
    rows = index.rows(("source", "start", "end", "text"))
    assert sorted(r["source"] for r in rows) == sorted(TOPICS)
    assert all(r["start"] is None and r["end"] is None for r in rows)
    docs = list(TOPICS.items())
    retriever = speechrag.load_retriever("cascade-tiny")
    again = index.add_texts(docs, retriever)
    assert again.indexed == [] and len(again.unchanged) == 3
    changed = index.add_texts([("bread", "Bread is baked.")], retriever)
    assert changed.indexed == ["bread"] and len(index) == 3
    assert {r["text"] for r in index.rows() if r["source"] == "bread"} == {"Bread is baked."}
    index.add_texts([("bread", TOPICS["bread"])], retriever)
    with pytest.raises(ValueError, match="more than once"):
        index.add_texts([("a", "x"), ("a", "y")], retriever)


def test_spoken_query_finds_text(docs_index: Path, spoken: Path) -> None:
    result = runner.invoke(app, ["search", "--index", str(docs_index), "--query-audio",
                                 str(spoken / "violin-q.wav"), "--k", "1", "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    assert line["query_audio"].endswith("violin-q.wav") and line["query"] is None
    hit = line["hits"][0]
    assert hit["source"] == "violin" and hit["start"] is None and hit["end"] is None
    table = runner.invoke(app, ["search", "--index", str(docs_index), "--query-audio",
                                str(spoken / "violin-q.wav"), "--k", "1"])
    assert table.exit_code == 0 and "violin" in table.output and "[spoken]" in table.output


def test_queries_file_mixes_text_and_speech_and_survives_a_bad_file(
        docs_index: Path, spoken: Path, tmp_path: Path) -> None:
    write_wav(tmp_path / "silence.wav", np.zeros(0, dtype=np.float32))
    queries = tmp_path / "q.jsonl"
    rel = os.path.relpath(spoken / "bread-q.wav", tmp_path)  # relative to the queries file
    queries.write_text("\n".join([
        json.dumps({"id": "a", "audio": str(spoken / "violin-q.wav")}),
        json.dumps({"id": "b", "text": "molten rock from a magma chamber"}),
        json.dumps({"id": "c", "audio": str(tmp_path / "silence.wav")}),
        json.dumps({"id": "d", "audio": rel}),
    ]) + "\n")
    result = runner.invoke(app, ["search", "--index", str(docs_index), "--queries",
                                 str(queries), "--k", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert "skipped query c" in result.output and "silence.wav" in result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert {x["query_id"]: x["hits"][0]["source"] for x in lines} == {
        "a": "violin", "b": "volcano", "d": "bread"}


def test_spoken_query_over_speech(speech_dir: Path, spoken: Path, tmp_path: Path) -> None:
    ix = tmp_path / "audio-ix"
    result = runner.invoke(app, ["index", str(speech_dir), "--index", str(ix), "--model",
                                 "cascade-tiny", "--window", "10", "--hop", "5"])
    assert result.exit_code == 0, result.output
    hits = speechrag.search_audio(ix, spoken / "bread-q.wav", k=1)
    assert Path(hits[0].source).stem == "bread" and hits[0].start is not None


def test_bad_spoken_query_is_a_clear_error(docs_index: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    long = write_wav(tmp_path / "long.wav", np.zeros(16_000 * 130, dtype=np.float32))
    for path, why in [(junk, "junk.wav"), (long, "too long for a spoken query"),
                      (tmp_path / "missing.wav", "file not found")]:
        result = runner.invoke(app, ["search", "--index", str(docs_index), "--query-audio",
                                     str(path)])
        assert result.exit_code == 2 and why in result.output, result.output
    both = runner.invoke(app, ["search", "--index", str(docs_index), "--query", "x",
                               "--query-audio", str(junk)])
    assert both.exit_code == 2 and "exactly one" in both.output
