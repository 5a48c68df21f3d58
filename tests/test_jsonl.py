from __future__ import annotations

import pytest

from speechrag.jsonl import BadLine, read_jsonl


def test_lines_numbered_blank_skipped_bad_reported(tmp_path):
    f = tmp_path / "docs.jsonl"
    f.write_text('{"id": 1, "text": "a"}\n\n{oops\r\n{"id": 2, "text": "b"}\r\n', encoding="utf-8")
    rows = read_jsonl(f, "documents file")
    assert [n for n, _ in rows] == [1, 3, 4]
    assert rows[0][1] == {"id": 1, "text": "a"}
    bad = rows[1][1]
    assert isinstance(bad, BadLine) and bad.where == f"{f}:3" and "not valid JSON" in bad.reason
    assert rows[2][1] == {"id": 2, "text": "b"}


def test_unicode_line_separators_inside_strings_stay_in_their_line(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"text": "one\u2028two\x85three"}\n', encoding="utf-8")
    assert read_jsonl(f, "queries file") == [(1, {"text": "one\u2028two\x85three"})]


def test_missing_and_non_utf8_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="queries file not found"):
        read_jsonl(tmp_path / "nope.jsonl", "queries file")
    f = tmp_path / "latin1.jsonl"
    f.write_bytes('{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=f"{f}: not UTF-8"):
        read_jsonl(f, "queries file")
