from __future__ import annotations

from pathlib import Path

from speechrag.report import load_reports, plot_reports, write_report


def _report(model: str, r1: float) -> dict:
    block = {"n": 2, "R@1": r1, "R@5": 1.0, "R@10": 1.0, "MRR": r1}
    return {"model": model, "retrieval": {"overall": block, "by_kind": {"title": block},
                                          "by_voice": {}},
            "indexing": {"rtf": 0.1}}


def test_reports_and_chart(tmp_path: Path) -> None:
    write_report(_report("cascade", 0.5), tmp_path)
    write_report(_report("models/x.json", 1.0), tmp_path)
    assert [r["model"] for r in load_reports(tmp_path)] == ["cascade", "models/x.json"]
    png = plot_reports(tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_hit_tables_shorten_paths_but_keep_ids(tmp_path: Path, monkeypatch) -> None:
    from speechrag.report import shown_source

    work, home = tmp_path / "work", tmp_path / "home"  # apart, whatever HOME is here
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    assert shown_source(str(work / "talks" / "a.wav")) == "talks/a.wav"
    assert shown_source(str(home / "x" / "b.flac")) == "~/x/b.flac"
    assert shown_source("/elsewhere/c.wav") == "/elsewhere/c.wav"
    assert shown_source("doc-17") == "doc-17"  # a text document's id
    assert shown_source("rel/d.wav") == "rel/d.wav"  # indexed relative: already short
