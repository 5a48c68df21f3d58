from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lancedb
import pytest
from typer.testing import CliRunner

from speechrag.cli import app

runner = CliRunner()
MODEL = ["--model", "cascade-tiny", "--window", "10", "--hop", "5"]


@pytest.mark.parametrize("cmd", [[], ["index"], ["index-text"], ["search"], ["eval"], ["demo"],
                                 ["corpus", "build"], ["info"], ["remove"], ["ask"]])
def test_help_everywhere(cmd: list[str]) -> None:
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("speechrag 0.")


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, speech_dir) -> Path:
    ix = tmp_path_factory.mktemp("cli") / "ix"
    result = runner.invoke(app, ["index", str(speech_dir), "--index", str(ix), *MODEL])
    assert result.exit_code == 0, result.output
    return ix


def test_search_json_contract(cli_index: Path, speech_dir: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "q1", "text": "molten rock and ash"}\n\n'
                       '{"id": 7, "text": "baking a loaf"}\n')
    result = runner.invoke(app, ["search", "--index", str(cli_index), "--queries", str(queries),
                                 "--k", "2", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query_id"] for line in lines] == ["q1", 7]
    assert lines[0]["query"] == "molten rock and ash"
    for line in lines:
        assert len(line["hits"]) == 2
        for hit in line["hits"]:
            assert set(hit) == {"id", "source", "start", "end", "score", "text"}
            assert Path(hit["source"]).parent == speech_dir  # the path as indexed
            assert 0 <= hit["start"] < hit["end"] and isinstance(hit["score"], float)
    assert Path(lines[0]["hits"][0]["source"]).stem == "volcano"
    assert Path(lines[1]["hits"][0]["source"]).stem == "bread"


def test_search_exact_and_through_a_vector_index(cli_index: Path, tmp_path: Path,
                                                 monkeypatch) -> None:
    """--exact scans every row; with a vector index built over the same rows the default
    search returns the same hits, and `info` says which way it searches."""
    import speechrag.index as index_module

    args = ["search", "--index", str(tmp_path / "ix"), "--query", "molten rock", "--json"]
    shutil.copytree(cli_index, tmp_path / "ix")
    exact = json.loads(runner.invoke(app, [*args, "--exact"]).stdout)["hits"]
    monkeypatch.setattr(index_module, "ANN_MIN_ROWS", 1)
    assert index_module.Index.open(tmp_path / "ix").maintain_vector_index(force=True)
    assert "IVF_RQ" in json.loads(runner.invoke(
        app, ["info", "--index", str(tmp_path / "ix"), "--json"]).stdout)["search"]
    approx = json.loads(runner.invoke(app, args).stdout)["hits"]
    assert [h["id"] for h in approx] == [h["id"] for h in exact] and exact


def test_search_table_shows_mmss(cli_index: Path) -> None:
    result = runner.invoke(app, ["search", "--index", str(cli_index), "--query", "violin"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "00:00" in result.stdout and "violin" in result.stdout


def test_brackets_in_user_text_are_printed_literally(cli_index: Path) -> None:
    result = runner.invoke(app, ["search", "--index", str(cli_index), "--query",
                                 "[bold]lava[/bold] [x]"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "[bold]lava[/bold] [x]" in result.stdout


def test_bad_queries_line_names_the_line(cli_index: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": 1, "text": "ok"}\n{"id": 2, "text": \n')
    result = runner.invoke(app, ["search", "--index", str(cli_index), "--queries", str(queries)])
    assert result.exit_code == 2 and f"{queries}:2" in result.stderr
    queries.write_text('{"id": 1, "question": "wrong key"}\n')
    result = runner.invoke(app, ["search", "--index", str(cli_index), "--queries", str(queries)])
    assert result.exit_code == 2 and f"{queries}:1" in result.stderr


def test_search_needs_exactly_one_query_source(cli_index: Path) -> None:
    result = runner.invoke(app, ["search", "--index", str(cli_index)])
    assert result.exit_code == 2 and "exactly one" in result.stderr
    folder, empty = cli_index.parent / "no-audio-here", cli_index.parent / "empty-index"
    folder.mkdir()
    result = runner.invoke(app, ["index", str(folder), "--index", str(empty), *MODEL])
    assert result.exit_code == 1 and "holds no audio files" in result.stderr
    result = runner.invoke(app, ["search", "--index", str(empty), "--query", "violin"])
    assert result.exit_code == 0 and "holds nothing yet" in result.stderr
    for blank in ("", "   "):
        result = runner.invoke(app, ["search", "--index", str(cli_index), "--query", blank])
        assert result.exit_code == 2 and "--query is empty" in result.stderr


def test_rerun_keeps_the_index_cut_unless_told(cli_index: Path, speech_dir: Path) -> None:
    result = runner.invoke(app, ["index", str(speech_dir), "--index", str(cli_index)])
    assert result.exit_code == 0 and "3 unchanged" in result.stderr
    result = runner.invoke(app, ["index", str(speech_dir), "--index", str(cli_index),
                                 "--window", "30"])
    assert result.exit_code == 2 and "cut with" in result.stderr


def test_other_model_on_existing_index_is_refused(cli_index: Path, speech_dir: Path) -> None:
    result = runner.invoke(app, ["index", str(speech_dir), "--index", str(cli_index),
                                 "--model", "cascade", "--window", "10", "--hop", "5"])
    assert result.exit_code == 2 and "built with model" in result.stderr


def test_nothing_indexable_exits_nonzero_and_reports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    result = runner.invoke(app, ["index", str(bad), str(tmp_path / "gone.flac"),
                                 "--index", str(tmp_path / "ix"), *MODEL])
    assert result.exit_code == 1
    assert f"{bad}:" in result.stderr and "gone.flac: file not found" in result.stderr
    assert "2 skipped" in result.stderr


def test_kill_9_mid_run_then_resume(tmp_path: Path, speech_dir: Path) -> None:
    """kill -9 while indexing; the re-run finishes with every file, no duplicates."""
    src = tmp_path / "audio"
    src.mkdir()
    for i in range(4):
        for wav in sorted(speech_dir.glob("*.wav")):
            shutil.copy(wav, src / f"{i}-{wav.name}")
    ix = tmp_path / "ix"
    cmd = [sys.executable, "-m", "speechrag.cli", "index", str(src), "--index", str(ix), *MODEL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            done = lancedb.connect(str(ix)).open_table("files").count_rows()
        except Exception:  # noqa: BLE001 - tables not created yet
            done = 0
        if done >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "indexing finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= done < 12
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = lancedb.connect(str(ix)).open_table("segments").to_arrow()
    seg_ids = table.column("id").to_pylist()
    assert len(seg_ids) == len(set(seg_ids))
    assert len(set(table.column("source").to_pylist())) == 12
    # the resumed index equals one built in a single clean run
    clean = tmp_path / "clean"
    runner.invoke(app, ["index", str(src), "--index", str(clean), *MODEL])
    clean_ids = lancedb.connect(str(clean)).open_table("segments").to_arrow().column("id")
    assert sorted(seg_ids) == sorted(clean_ids.to_pylist())


def test_info_and_remove(speech_dir: Path, tmp_path: Path) -> None:
    """info says what the index holds; remove takes a file's segments and record out (the
    other files stay searchable), says what it could not find, and a second run of it
    finishes one that was cut between its two commits."""
    ix = tmp_path / "ix"
    assert runner.invoke(app, ["index", str(speech_dir), "--index", str(ix), *MODEL]
                         ).exit_code == 0
    shown = runner.invoke(app, ["info", "--index", str(ix)])
    assert shown.exit_code == 0 and "3 (0.0" in shown.stdout and "cascade" in shown.stdout
    summary = json.loads(runner.invoke(app, ["info", "--index", str(ix), "--json"]).stdout)
    assert summary["files"] == 3 and summary["orphan_segments"] == 0
    assert 0 < summary["audio_hours"] < 0.02 and summary["model"]["kind"] == "cascade"

    violin = speech_dir / "violin.wav"
    done = runner.invoke(app, ["remove", str(violin), "nowhere.wav", "--index", str(ix)])
    assert done.exit_code == 0 and "not in the index: nowhere.wav" in done.output
    after = json.loads(runner.invoke(app, ["info", "--index", str(ix), "--json"]).stdout)
    assert after["files"] == 2 and after["segments"] < summary["segments"]
    hits = json.loads(runner.invoke(app, ["search", "--index", str(ix), "--query",
                                          "a wooden string instrument", "--json"]).stdout)
    assert hits["hits"] and not any(h["source"].endswith("violin.wav") for h in hits["hits"])
    assert runner.invoke(app, ["remove", str(violin), "--index", str(ix)]).exit_code == 1

    # a remove killed between its commits: the record is gone, the rows are not
    from speechrag.index import Index

    index = Index.open(ix)
    bread = os.path.realpath(speech_dir / "bread.wav")
    index.files.delete(f"path_key = '{bread}'")
    assert index.summary()["orphan_segments"] > 0
    assert "segments of no recorded file" in runner.invoke(app, ["info", "--index", str(ix)]
                                                           ).stdout
    assert runner.invoke(app, ["remove", str(speech_dir / "bread.wav"), "--index", str(ix)]
                         ).exit_code == 0
    final = Index.open(ix).summary()
    assert final["orphan_segments"] == 0 and final["files"] == 1

    # any later write finishes a cut remove first, an `index` run of nothing new included
    index = Index.open(ix)
    volcano = os.path.realpath(speech_dir / "volcano.wav")
    assert index.files.count_rows(f"path_key = '{volcano}'") == 1
    index.files.delete(f"path_key = '{volcano}'")
    assert Index.open(ix).summary()["orphan_segments"] > 0
    assert runner.invoke(app, ["index", str(speech_dir / "bread.wav"), "--index", str(ix)]
                         ).exit_code == 0
    final = Index.open(ix).summary()
    assert final["orphan_segments"] == 0 and final["files"] == 1


# -- ask --------------------------------------------------------------------------------------

LLM = ["--llm", "smollm2-135m"]


def test_ask_streams_then_lists_citations_and_json_has_the_contract(cli_index: Path,
                                                                     tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "--index", str(cli_index), "--query",
                                 "Which instrument has four strings?", "--k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert "violin" in lines[0].lower()
    assert any(line.startswith("[1] ") and "violin.wav" in line and "00:0" in line
               for line in lines[1:]), result.stdout
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "a", "text": "bread"}\n{"id": "b", "audio": "missing.wav"}\n')
    result = runner.invoke(app, ["ask", "--index", str(cli_index), "--queries", str(queries),
                                 "--k", "2", "--json", *LLM])
    assert result.exit_code == 0, result.output
    assert "skipped question b" in result.stderr and "missing.wav" in result.stderr
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert set(line) >= {"query_id", "query", "answer", "citations", "hits", "timings"}
    assert line["query_id"] == "a" and line["answer"] and len(line["hits"]) == 2
    assert set(line["timings"]) >= {"retrieve_ms", "first_token_ms", "total_ms",
                                    "tokens_per_s"}
    for c in line["citations"]:
        assert set(c) == {"n", "source", "start", "end", "score"}


def test_ask_bad_input_is_one_clear_line_and_a_nonzero_status(cli_index: Path,
                                                              tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    cases = [
        (["--index", str(tmp_path / "none"), "--query", "q"], "not a speechrag index"),
        (["--index", str(cli_index), "--query", "  "], "empty"),
        (["--index", str(cli_index), "--query", "why " * 400], "characters long"),
        (["--index", str(cli_index), "--query", "q", "--llm", str(tmp_path / "no.gguf")],
         "no model file"),
        (["--index", str(cli_index), "--query", "q", "--llm", str(junk)], "cannot load"),
        (["--index", str(cli_index), "--query", "q", "--llm", "http://127.0.0.1:9"],
         "cannot reach the LLM server at http://127.0.0.1:9"),
        (["--index", str(cli_index), "--query", "q", "--context", "psychic"],
         "unknown context"),
        (["--index", str(cli_index), "--query-audio", str(tmp_path / "nope.wav")],
         "nope.wav"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["ask", *args, *(LLM if "--llm" not in args else [])])
        assert result.exit_code != 0, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output


def _docs(tmp_path: Path, docs: list[tuple[str, str]]) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": d, "text": t}) + "\n" for d, t in docs))
    return path


def test_ask_an_empty_index_and_a_hit_that_does_not_fit(tmp_path: Path) -> None:
    from speechrag.index import Index
    from speechrag.retrievers import load_retriever
    from speechrag.segment import SegmenterConfig

    empty = tmp_path / "empty"
    Index.create(empty, load_retriever("cascade"), SegmenterConfig())
    result = runner.invoke(app, ["ask", "--index", str(empty), "--query", "q", *LLM])
    assert result.exit_code == 2 and "holds nothing" in result.stderr
    docs = _docs(tmp_path, [("long", "The violin has four strings. " * 1200),
                            ("short", "The violin has four strings.")])
    ix = tmp_path / "docs"
    assert runner.invoke(app, ["index-text", str(docs), "--index", str(ix)]).exit_code == 0
    question = ["ask", "--index", str(ix), "--query", "How many strings has a violin?",
                "--k", "2", *LLM]
    result = runner.invoke(app, [*question, "--context-tokens", "0"])  # every word
    assert result.exit_code == 0, result.output
    assert "1 of 2 passages did not fit the LLM's context" in result.stderr
    result = runner.invoke(app, question)  # cut to its best sentences, the long one fits
    assert result.exit_code == 0, result.output
    assert "did not fit" not in result.stderr


def test_ctrl_c_while_an_answer_streams_stops_cleanly(cli_index: Path) -> None:
    cmd = [sys.executable, "-m", "speechrag.cli", "ask", "--index", str(cli_index), "--query",
           "Tell me everything about volcanoes, at great length.", "--max-tokens", "4000",
           *LLM]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.read(1)  # the answer has started streaming
    assert first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
