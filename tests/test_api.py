"""The Python quickstart, as the README shows it, run for real."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import speechrag
from speechrag.index import IndexConfigError
from speechrag.segment import SegmenterConfig

README = Path(__file__).parents[1] / "README.md"


def test_index_and_search(tmp_path: Path, speech_dir: Path) -> None:
    seg = SegmenterConfig(window_s=10, hop_s=5)
    report = speechrag.index_audio([speech_dir, tmp_path / "missing"], tmp_path / "ix",
                                   model="cascade-tiny", segmenter=seg)
    assert len(report.indexed) == 3 and report.failed == [(str(tmp_path / "missing"),
                                                           "file not found")]
    hits = speechrag.search(tmp_path / "ix", "a bowed string instrument", k=2)
    assert Path(hits[0].source).stem == "violin" and len(hits) == 2
    mixed = speechrag.search(tmp_path / "ix", "a bowed string instrument", k=2, hybrid=0.3)
    assert Path(mixed[0].source).stem == "violin"
    assert mixed[0].score >= hits[0].score  # the cosine plus a non-negative match
    again = speechrag.index_audio([speech_dir], tmp_path / "ix", segmenter=seg)
    assert again.indexed == [] and len(again.unchanged) == 3  # keeps the index's own model
    with pytest.raises(ValueError, match="question is empty"):
        speechrag.search(tmp_path / "ix", " ")
    with pytest.raises(IndexConfigError, match="built with model"):
        speechrag.open_index(tmp_path / "ix", model="cascade", segmenter=seg)


def test_readme_python_quickstart_runs(tmp_path: Path, speech_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python quickstart"
    shutil.copytree(speech_dir, tmp_path / "talks")
    monkeypatch.chdir(tmp_path)
    printed: list[tuple] = []
    exec(compile(blocks[0], "README.md", "exec"), {"print": lambda *a: printed.append(a)})
    assert printed and Path(str(printed[0][0])).parent.name == "talks"
