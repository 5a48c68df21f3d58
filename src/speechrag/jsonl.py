"""User-given JSON files: JSONL (documents to index, queries to ask: one JSON value per
line) and single JSON objects (training configs).

The file-level checks (missing, not UTF-8) are errors naming the file; a line that is
not JSON comes back as a :class:`BadLine` naming ``FILE:LINE``, so each caller decides
whether one bad line is fatal (queries) or skipped and reported (documents).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BadLine:
    """A line that could not be used: ``where`` is ``FILE:LINE``."""

    where: str
    reason: str


def read_jsonl(path: str | Path, what: str) -> list[tuple[int, Any | BadLine]]:
    """``path`` -> [(line number, parsed value or BadLine)] for every non-blank line.
    ``what`` names the file's role in errors ("documents file", "queries file")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        # split on "\n" only: JSON strings may hold U+2028 and other breaks splitlines() cuts at
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason})") from None
    out: list[tuple[int, Any | BadLine]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            out.append((n, BadLine(f"{path}:{n}", f"not valid JSON ({e.msg})")))
    return out


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object (a config): missing, not UTF-8, not JSON or not an
    object is a ValueError naming the file. ``what`` names its role ("train config")."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: {what} not found")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {what} is not valid JSON ({e.msg}, line {e.lineno} "
                         f"column {e.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: a {what} is a JSON object ({{...}}), not "
                         f"{type(value).__name__}")
    return value
