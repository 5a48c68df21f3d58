"""Training data with spoken queries: what is paired with what, and what is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from speechrag.corpus.build import load_corpus
from speechrag.models.losses import IGNORE
from speechrag.models.text_encoder import TextEncoder
from speechrag.train.data import (
    Batches,
    cache_states,
    cap_validation,
    held_out,
    training_corpora,
    training_utterances,
)


def test_spoken_queries_join_training_paired_with_their_passage(spoken_corpus: Path,
                                                                tmp_path: Path) -> None:
    utts = training_utterances(load_corpus(spoken_corpus))
    passages = {u.passage_id: u for u in utts if u.kind == "passage"}
    spoken = [u for u in utts if u.kind == "query"]
    assert len(passages) == 8 and len(spoken) == len(load_corpus(spoken_corpus).queries) > 8
    for u in spoken:
        assert u.document == passages[u.passage_id].text and u.text != u.document
        assert 0 < u.end < 10 and u.start == 0
    features = cache_states(utts, "whisper-tiny.en", tmp_path)
    assert len(list(features.glob("*.pt"))) == len(utts)
    text = TextEncoder("all-MiniLM-L6-v2")
    queries: dict[str, list[str]] = {}
    for q in load_corpus(spoken_corpus).queries:
        queries.setdefault(q["passage_id"], []).append(q["text"])
    batches = Batches(utts, queries, text, features, batch_size=4, seed=0, query_fraction=0.5)
    for step in range(5):
        b = batches.batch(step)
        assert b["states"].shape[0] == 4
    rng_batch = batches.batch(3)
    assert torch.equal(rng_batch["targets"], batches.batch(3)["targets"])  # seeded by step
    chosen = [batches.collate([u]) for u in (spoken[0], passages[spoken[0].passage_id])]
    doc_ids = text.token_ids([spoken[0].document])[0]
    assert chosen[0]["query_ids"][0].tolist() == doc_ids  # a spoken query -> its passage
    said = chosen[0]["targets"][0]
    assert said[said != IGNORE].tolist() == text.token_ids([spoken[0].text])[0]
    asked = chosen[1]["query_ids"][0, : int(chosen[1]["query_lengths"][0])].tolist()
    assert asked in [text.token_ids([q])[0] for q in queries[spoken[0].passage_id]]


def test_batches_never_hold_two_utterances_of_one_passage(spoken_corpus: Path) -> None:
    class Chosen(Batches):  # what batch() picked, before any audio is read
        def collate(self, chosen, rng=None):  # type: ignore[override]
            return chosen

    utts = training_utterances(load_corpus(spoken_corpus))
    text = TextEncoder("all-MiniLM-L6-v2")
    batches = Chosen(utts, {u.passage_id: ["q"] for u in utts}, text, Path("unused"),
                     batch_size=6, seed=1, query_fraction=0.5)
    for step in range(20):
        chosen = batches.batch(step)
        assert len({u.passage_id for u in chosen}) == len(chosen) == 6
        assert sum(u.kind == "query" for u in chosen) == 3
    assert batches.batch(7) == batches.batch(7)
    only_passages = Chosen([u for u in utts if u.kind == "passage"],
                           {u.passage_id: ["q"] for u in utts}, text, Path("unused"),
                           batch_size=6, seed=1, query_fraction=0.5)
    assert all(u.kind == "passage" for u in only_passages.batch(0))
    # spoken queries of only one passage: one per batch, the rest passages (no endless draw)
    one = next(u.passage_id for u in utts if u.kind == "query")
    few = Chosen([u for u in utts if u.kind == "passage" or u.passage_id == one],
                 {u.passage_id: ["q"] for u in utts}, text, Path("unused"),
                 batch_size=6, seed=1, query_fraction=0.5)
    for step in range(5):
        chosen = few.batch(step)
        assert len({u.passage_id for u in chosen}) == len(chosen) == 6
        assert sum(u.kind == "query" for u in chosen) == 1


def test_validation_keeps_whole_passages(spoken_corpus: Path) -> None:
    utts = training_utterances(load_corpus(spoken_corpus))
    train, val = held_out(utts, 0.5)
    assert not {u.passage_id for u in train} & {u.passage_id for u in val}
    capped = cap_validation(val, 2)
    kept = {u.passage_id for u in capped if u.kind == "passage"}
    assert len(kept) == min(2, len({u.passage_id for u in val}))
    assert {u.passage_id for u in capped} == kept
    assert sum(u.kind == "query" for u in capped) == sum(
        u.kind == "query" and u.passage_id in kept for u in val) >= len(kept)


def test_spoken_queries_in_other_voices_are_refused(spoken_corpus: Path,
                                                    tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    shutil.copytree(spoken_corpus, root)
    path = root / "spoken_queries.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["voice"] = "flite:slt"  # an evaluation voice
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="training voices only"):
        training_utterances(load_corpus(root))


def test_cache_keys_follow_the_path_inside_the_corpus(spoken_corpus: Path,
                                                      tmp_path: Path) -> None:
    """A copy of a corpus (or a bigger build of the same seed) has the same keys, so a
    shared --features cache serves both, spoken queries included; distinct utterances
    never share a key."""
    copy = tmp_path / "elsewhere" / "corpus"
    shutil.copytree(spoken_corpus, copy)
    here, there = (training_utterances(load_corpus(c)) for c in (spoken_corpus, copy))
    assert [u.key for u in here] == [u.key for u in there]
    assert any(u.kind == "query" for u in here)
    assert len({u.key for u in here}) == len(here)


def test_states_cached_in_shared_passes_equal_one_by_one(spoken_corpus: Path,
                                                          tmp_path: Path) -> None:
    # the GPU path (several utterances per padded pass), run here on the CPU in fp32
    utts = training_utterances(load_corpus(spoken_corpus))[:6]
    monkey = pytest.MonkeyPatch()
    monkey.setenv("SPEECHRAG_ENCODER_DTYPE", "float32")
    try:
        alone = cache_states(utts, "whisper-tiny.en", tmp_path / "alone", device="cpu")
        shared = cache_states(utts, "whisper-tiny.en", tmp_path / "shared", device="cpu",
                              batch=4)
        # and with the GPU's threads: audio read ahead, log-mels and writes in a pool
        threaded = cache_states(utts, "whisper-tiny.en", tmp_path / "threaded",
                                device="cpu", batch=4, workers=3)
    finally:
        monkey.undo()
    assert alone.name == shared.name == threaded.name == "whisper-tiny.en-piece20s-fp32"
    assert not list(threaded.glob("*.tmp"))
    for u in utts:
        a = torch.load(alone / f"{u.key}.pt", weights_only=True).float()
        b = torch.load(shared / f"{u.key}.pt", weights_only=True).float()
        assert a.shape == b.shape and a.shape[0] == pytest.approx(50 * (u.end - u.start), abs=2)
        assert torch.allclose(a, b, atol=2e-2), float((a - b).abs().max())
        assert torch.equal(torch.load(threaded / f"{u.key}.pt", weights_only=True).float(), b)


def test_renditions_of_one_split_train_together(train_corpus: Path, second_rendition: Path,
                                                tmp_path: Path) -> None:
    """A second rendition (other voices) of the same passages never shares a cached state
    with the first; every rendition holds out the same passages; validation is the first
    corpus's alone; a corpus given twice, or two builds of one seed, are refused."""
    first, second = load_corpus(train_corpus), load_corpus(second_rendition)
    assert {m["passage_id"] for m in first.manifest} == {m["passage_id"] for m in second.manifest}
    a, b = training_utterances(first), training_utterances(second)
    assert {Path(u.audio).name for u in a} == {Path(u.audio).name for u in b}  # same names
    assert not {u.key for u in a} & {u.key for u in b}
    voices = {u.passage_id: u.voice for u in a}
    assert all(voices[u.passage_id] != u.voice for u in b)

    train, val, questions = training_corpora([first, second], val_fraction=0.3)
    held = {u.passage_id for u in val}
    assert held and not held & {u.passage_id for u in train}
    assert {u.audio for u in val} <= {u.audio for u in a}  # the first corpus's alone
    assert len(train) == len(a) + len(b) - 2 * len(val)
    assert set(questions) == {m["passage_id"] for m in first.manifest}
    for pid, asked in questions.items():
        assert asked == [q["text"] for q in first.queries if q["passage_id"] == pid]
    assert training_corpora([first], 0.3)[:2] == held_out(a, 0.3)

    with pytest.raises(ValueError, match="given twice"):
        training_corpora([first, first], 0.3)
    copy = tmp_path / "copy"
    shutil.copytree(train_corpus, copy)
    with pytest.raises(ValueError, match="needs other --voices or --seed"):
        training_corpora([first, load_corpus(copy)], 0.3)
