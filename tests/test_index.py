from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from speechrag.index import Index, IndexConfigError, collect_audio_files
from speechrag.segment import SegmenterConfig

from .conftest import TOPICS, speak

WIN = SegmenterConfig(window_s=10, hop_s=5)


def ids(index: Index) -> list[str]:
    return index.segments.to_arrow().column("id").to_pylist()


@pytest.fixture
def speech(tmp_path: Path, speech_dir: Path) -> Path:
    """A private copy of the session's recordings (tests below modify files)."""
    root = tmp_path / "speech"
    shutil.copytree(speech_dir, root)
    return root


def test_round_trip_search_finds_the_right_recording(tmp_path, speech, tiny_retriever) -> None:
    index = Index.create(tmp_path / "ix", tiny_retriever, WIN)
    files, problems = collect_audio_files([speech])
    assert len(files) == 3 and not problems
    report = index.add_files(files, tiny_retriever)
    assert len(report.indexed) == 3 and not report.failed
    reopened = Index.open(tmp_path / "ix")
    assert len(reopened) == report.n_segments and reopened.config == index.config
    for topic, question in [("volcano", "where does lava come from"),
                            ("violin", "a string instrument played with a bow"),
                            ("bread", "food baked from flour and water")]:
        hits = reopened.search(tiny_retriever.encode_text([question]), k=3)[0]
        assert Path(hits[0].source).stem == topic
        assert hits[0].start == 0.0 and hits[0].score > hits[-1].score
        assert hits[0].text and any(w in hits[0].text.lower() for w in TOPICS[topic].split()[1:4])


def test_reindex_adds_nothing_and_new_files_are_added(tmp_path, speech, tiny_retriever) -> None:
    index = Index.create(tmp_path / "ix", tiny_retriever, WIN)
    first = sorted(speech.glob("*.wav"))[:2]
    index.add_files([str(p) for p in first], tiny_retriever)
    before = sorted(ids(index))
    again = index.add_files([str(p) for p in first], tiny_retriever)
    assert again.indexed == [] and len(again.unchanged) == 2
    assert sorted(ids(index)) == before
    files, _ = collect_audio_files([speech])
    later = index.add_files(files, tiny_retriever)
    assert len(later.indexed) == 1 and len(later.unchanged) == 2
    assert len(set(ids(index))) == len(ids(index)) > len(before)
    assert len(index.indexed_files()) == 3


def test_bad_files_are_skipped_and_nothing_stored_is_lost(tmp_path, speech,
                                                          tiny_retriever) -> None:
    index = Index.create(tmp_path / "ix", tiny_retriever, WIN)
    good = sorted(speech.glob("*.wav"))
    index.add_files([str(good[0])], tiny_retriever)
    stored = sorted(ids(index))
    (speech / "empty.wav").write_bytes(b"")
    (speech / "junk.mp3").write_bytes(os.urandom(5000))
    (speech / "readme.txt").write_text("not audio")  # not an audio extension: not collected
    notes = tmp_path / "notes"  # e.g. the wrong folder: said, not indexed as nothing
    notes.mkdir()
    (notes / "todo.txt").write_text("not audio")
    files, problems = collect_audio_files([speech, tmp_path / "missing.wav", notes])
    assert problems[0] == (str(tmp_path / "missing.wav"), "file not found")
    assert problems[1][0] == str(notes) and "no audio files" in problems[1][1]
    assert all(not f.startswith(str(notes)) for f in files)
    report = index.add_files(files, tiny_retriever)
    failed = dict(report.failed)
    assert set(failed) == {str(speech / "empty.wav"), str(speech / "junk.mp3")}
    assert "empty" in failed[str(speech / "empty.wav")]
    assert len(report.indexed) == 2 and len(report.unchanged) == 1
    assert set(stored) <= set(ids(index))


def test_changed_file_is_reindexed_but_a_corrupt_one_keeps_old_rows(tmp_path, speech,
                                                                    tiny_retriever) -> None:
    index = Index.create(tmp_path / "ix", tiny_retriever, WIN)
    path = speech / "volcano.wav"
    index.add_files([str(path)], tiny_retriever)
    old_text = index.rows()[0]["text"]
    path.write_bytes(b"\x00" * 100)  # replaced by garbage
    report = index.add_files([str(path)], tiny_retriever)
    assert report.failed and index.rows()[0]["text"] == old_text
    speak(TOPICS["bread"], path)  # replaced by other speech
    report = index.add_files([str(path)], tiny_retriever)
    assert report.indexed == [str(path)]
    new_text = " ".join(r["text"] for r in index.rows()).lower()
    assert "oven" in new_text and "volcan" not in new_text
    assert len(index.indexed_files()) == 1


def test_another_model_or_window_is_refused(tmp_path, speech, tiny_retriever) -> None:
    Index.create(tmp_path / "ix", tiny_retriever, WIN)
    with pytest.raises(IndexConfigError, match="cut with"):
        Index.create(tmp_path / "ix", tiny_retriever, SegmenterConfig(window_s=40, hop_s=20))
    other = {**Index.open(tmp_path / "ix").config.model, "beam_size": 5}
    with pytest.raises(IndexConfigError, match="built with model"):
        Index.open(tmp_path / "ix").check_model(other)
    with pytest.raises(IndexConfigError, match="not a speechrag index"):
        Index.open(tmp_path)
    with pytest.raises(IndexConfigError, match="new or empty directory"):
        Index.create(speech, tiny_retriever, WIN)  # the audio folder itself: refused
    assert sorted(p.name for p in speech.iterdir()) == ["bread.wav", "violin.wav", "volcano.wav"]


def test_search_checks_the_dimension(tmp_path, tiny_retriever) -> None:
    index = Index.create(tmp_path / "ix", tiny_retriever, WIN)
    with pytest.raises(IndexConfigError, match="dim"):
        index.search(np.zeros((1, 7), dtype=np.float32))
    assert index.search(tiny_retriever.encode_text(["anything"]), k=5) == [[]]


def test_hostile_file_names(tmp_path, speech, tiny_retriever) -> None:
    odd = speech / "it's \"odd\" -- ; DROP.wav"
    shutil.copy(speech / "violin.wav", odd)
    index = Index.create(tmp_path / "ix", tiny_retriever, WIN)
    index.add_files([str(odd)], tiny_retriever)
    index.add_files([str(odd)], tiny_retriever)
    assert index.indexed_files() == [str(odd)] and len(set(ids(index))) == len(ids(index))


def test_a_second_writer_is_refused_clearly(tmp_path, speech, tiny_retriever) -> None:
    import fcntl

    index = Index.create(tmp_path / "ix", tiny_retriever, WIN)
    with open(tmp_path / "ix" / ".writer.lock", "w") as held:  # as another process would
        fcntl.flock(held, fcntl.LOCK_EX)
        other = Index.open(tmp_path / "ix")
        with pytest.raises(IndexConfigError, match="another process is indexing"):
            other.add_files([str(speech / "violin.wav")], tiny_retriever)
    assert len(index.add_files([str(speech / "violin.wav")], tiny_retriever).indexed) == 1


def test_two_runs_creating_one_new_index_the_second_is_told(tmp_path, speech,
                                                            tiny_retriever) -> None:
    """While one run creates a new index (it holds the writer lock), a second run creating
    the same index gets the message of an index being written, not a raw OSError about
    index.json.tmp; once the first is done, the second opens what it made."""
    import fcntl

    ix = tmp_path / "new"
    ix.mkdir()
    with open(ix / ".writer.lock", "w") as held:  # the first run, mid-creation
        fcntl.flock(held, fcntl.LOCK_EX)
        (ix / "index.json.tmp").write_text("{")
        with pytest.raises(IndexConfigError, match="another process is indexing into it"):
            Index.create(ix, tiny_retriever, WIN)
        (ix / "index.json.tmp").unlink()
    first = Index.create(ix, tiny_retriever, WIN)
    assert Index.create(ix, tiny_retriever, WIN).config == first.config
    assert len(first.add_files([str(speech / "violin.wav")], tiny_retriever).indexed) == 1


def _create_each(root: str, n: int, barrier, results) -> None:  # a child process
    from speechrag.retrievers.gold_text import GoldTextRetriever

    retriever = GoldTextRetriever()
    seen = []
    for i in range(n):
        barrier.wait()
        try:
            Index.create(Path(root) / f"ix{i}", retriever, WIN)
            seen.append("made or opened")
        except IndexConfigError as e:
            seen.append("told" if "another process is indexing into it" in str(e) else str(e))
        except Exception as e:  # noqa: BLE001 - what the test is looking for
            seen.append(f"crashed: {e!r}")
    results.put(seen)


def test_two_processes_racing_to_create_an_index(tmp_path) -> None:
    """Two processes create the same new index at the same moment, 12 times over: each
    either makes (or opens) it or is told another process is writing it; none crashes."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_create_each, args=(str(tmp_path), 12, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    seen = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    odd = [s for run in seen for s in run if s not in ("made or opened", "told")]
    assert not odd, odd  # only the outcomes that should not happen, in full
    assert all("made or opened" in pair for pair in zip(*seen, strict=True)), seen
    assert all((tmp_path / f"ix{i}" / "index.json").is_file() for i in range(12))


def test_remove_a_text_document_by_its_id(tmp_path, tiny_retriever) -> None:
    index = Index.create(tmp_path / "docs", tiny_retriever, WIN)
    index.add_texts([("a", "volcanoes erupt"), ("b", "bread is baked")], tiny_retriever)
    assert index.summary()["documents"] == 2
    assert index.remove(["a", "zzz"]) == (["a"], ["zzz"])
    assert [r["source"] for r in index.rows()] == ["b"]
    assert index.summary()["documents"] == 1 and index.summary()["files"] == 0


# -- the vector index (ANN) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def passages() -> list[tuple[str, str]]:
    """1,000 real WikiSpoken passages (train split) as text documents."""
    from speechrag.corpus.wikispoken import load_passages

    return [(p.passage_id, p.text) for p in load_passages() if p.split == "train"][:1000]


def test_a_vector_index_is_built_kept_fresh_and_rebuilt(tmp_path, passages, tiny_retriever,
                                                        monkeypatch) -> None:
    import speechrag.index as index_module

    monkeypatch.setattr(index_module, "ANN_MIN_ROWS", 300)  # the real one is 20,000 rows
    idx = Index.create(tmp_path / "idx", tiny_retriever, SegmenterConfig())
    notes: list[str] = []
    idx.on_note = notes.append
    idx.add_texts(passages[:250], tiny_retriever)
    assert idx.vector_index() is None and idx.summary()["search"].startswith("exact")

    idx.add_texts(passages[250:400], tiny_retriever)
    ann = idx.vector_index()
    assert ann is not None and ann.rows == 400 and ann.partitions == 20
    assert "IVF_RQ" in idx.summary()["search"] and notes
    assert (tmp_path / "idx" / "vector_index.json").is_file()

    # the ANN search finds what exact search finds (recall@5 against exact)
    questions = [text.split(".")[0] for _, text in passages[:400:20]]
    vectors = tiny_retriever.encode_text(questions)
    approx = idx.search(vectors, 5)
    exact = idx.search(vectors, 5, exact=True)
    overlap = [len({h.id for h in a} & {h.id for h in e}) / 5
               for a, e in zip(approx, exact, strict=True)]
    assert np.mean(overlap) >= 0.95
    assert all(a[0].id == e[0].id for a, e in zip(approx, exact, strict=True))

    # new rows are searched at once, before any rebuild
    idx.add_texts(passages[400:450], tiny_retriever)
    assert idx.vector_index().rows == 400  # extended, not rebuilt
    new_id, new_text = passages[420]
    assert idx.search(tiny_retriever.encode_text([new_text]), 1)[0][0].source == new_id

    # removed rows are gone from ANN results too
    idx.remove([new_id])
    assert all(h.source != new_id
               for h in idx.search(tiny_retriever.encode_text([new_text]), 5)[0])

    # once the table has doubled, the index is rebuilt for its size
    idx.add_texts(passages[450:820], tiny_retriever)
    assert idx.vector_index().rows == 819 and idx.vector_index().partitions == 29
    reopened = Index.open(tmp_path / "idx")
    assert reopened.vector_index() == idx.vector_index()


def test_an_interrupted_vector_index_build_leaves_exact_search(tmp_path, passages,
                                                               tiny_retriever) -> None:
    """The config is renamed into place after LanceDB's index exists: without it the index
    is searched exactly, and the next write builds it again."""
    import speechrag.index as index_module

    idx = Index.create(tmp_path / "idx", tiny_retriever, SegmenterConfig())
    idx.add_texts(passages[:100], tiny_retriever)
    assert idx.maintain_vector_index(force=True)
    (tmp_path / "idx" / index_module.ANN_FILE).unlink()  # as if killed before the rename
    assert idx.vector_index() is None
    hits = idx.search(tiny_retriever.encode_text([passages[7][1]]), 1)[0]
    assert hits[0].source == passages[7][0]
