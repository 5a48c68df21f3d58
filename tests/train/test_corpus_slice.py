"""benchmarks/corpus_slice.py: a slice of a train corpus must be a train corpus of exactly
those passages and their queries, whose utterances keep the source's cache keys (so the
cached Whisper states are shared) and whose held-out passages are the source's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from speechrag.corpus.build import load_corpus
from speechrag.train.data import held_out, training_utterances

SCRIPT = Path(__file__).parents[2] / "benchmarks/corpus_slice.py"
spec = importlib.util.spec_from_file_location("corpus_slice", SCRIPT)
corpus_slice = importlib.util.module_from_spec(spec)
spec.loader.exec_module(corpus_slice)


def test_slice_keeps_passages_queries_and_cache_keys(spoken_corpus: Path,
                                                     tmp_path: Path) -> None:
    src = load_corpus(spoken_corpus)
    out = tmp_path / "tail"
    assert corpus_slice.slice_corpus(spoken_corpus, out, 3) == 5
    part = load_corpus(out)
    kept = [m["passage_id"] for m in src.manifest[3:]]
    assert [m["passage_id"] for m in part.manifest] == kept
    assert {q["passage_id"] for q in part.queries} == set(kept)
    assert len(part.queries) == sum(q["passage_id"] in kept for q in src.queries)
    assert {q["passage_id"] for q in part.spoken_queries} == set(kept)
    assert all(Path(q["audio"]).is_file() for q in part.spoken_queries)
    # the same audio (hard links), so the same keys and the same cached states
    m = part.manifest[0]
    assert (out / m["audio"]).stat().st_ino == (spoken_corpus / m["audio"]).stat().st_ino
    source_keys = {u.key: u for u in training_utterances(src)}
    utts = training_utterances(part)
    assert len(utts) == len(part.manifest) + len(part.spoken_queries)
    assert all(u.key in source_keys and source_keys[u.key].text == u.text for u in utts)
    _, val_part = held_out(utts, 0.5)
    _, val_src = held_out(list(source_keys.values()), 0.5)
    assert {u.key for u in val_part} == {u.key for u in val_src if u.passage_id in kept}

    written = tmp_path / "written"
    assert corpus_slice.slice_corpus(spoken_corpus, written, 3, spoken=False) == 5
    assert load_corpus(written).spoken_queries == []
    assert not (written / "query_audio").exists()
    assert [u.kind for u in training_utterances(load_corpus(written))] == ["passage"] * 5


def test_slice_refuses_an_empty_range_or_a_used_directory(train_corpus: Path,
                                                          tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no passages"):
        corpus_slice.slice_corpus(train_corpus, tmp_path / "none", 8)
    with pytest.raises(ValueError, match="count from 0"):
        corpus_slice.slice_corpus(train_corpus, tmp_path / "none", -3)
    assert not (tmp_path / "none").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        corpus_slice.slice_corpus(train_corpus, used, 0, 2)
    assert (used / "keep.txt").read_text() == "mine"
