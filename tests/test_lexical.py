from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speechrag.cli import app
from speechrag.index import Index, IndexConfigError
from speechrag.lexical import HybridConfig, LexicalScorer, rerank
from speechrag.segment import SegmenterConfig

from .conftest import TOPICS

runner = CliRunner()

TRANSCRIPTS = {
    "ape": "the bornin ortonn is a great ape native to the rain forests",
    "reef": "coral reef fish live among the coral of a healthy reef",
    "feast": "christmas is an annual festival celebrated on december twenty fifth",
}


def test_a_misspelled_name_still_matches_its_transcript() -> None:
    """Character n-grams: 'Bornean orangutan' shares trigrams with 'bornin ortonn'."""
    scorer = LexicalScorer(list(TRANSCRIPTS), list(TRANSCRIPTS.values()))
    scores = scorer.scores("Bornean orangutan", list(TRANSCRIPTS))
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert scores.argmax() == 0 and scores[0] > 2 * max(scores[1:])
    assert np.all((scores >= 0) & (scores <= 1 + 1e-6))
    # an identical text scores 1; a query sharing nothing scores 0
    assert scorer.scores(TRANSCRIPTS["reef"], ["reef"])[0] == pytest.approx(1.0, abs=1e-5)
    assert scorer.scores("zzqx", ["feast"])[0] == 0.0
    assert scorer.scores("anything", []).shape == (0,)


def test_segments_without_transcripts_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no segment has a transcript"):
        LexicalScorer(["a", "b"], [None, "  "])
    # some transcripts missing is fine: those segments score 0
    scorer = LexicalScorer(["a", "b"], [None, "coral reef"])
    assert scorer.scores("coral", ["a", "b"]).tolist()[0] == 0.0


def test_rerank_adds_the_weighted_match_and_keeps_dense_order_on_ties() -> None:
    dense = np.array([0.60, 0.58, 0.30], dtype=np.float32)
    lexical = np.array([0.0, 0.5, 0.0], dtype=np.float32)
    order, scores = rerank(dense, lexical, 0.3)
    assert order.tolist() == [1, 0, 2]
    assert scores.tolist() == pytest.approx([0.60, 0.73, 0.30])
    order, _ = rerank(dense, np.zeros(3, dtype=np.float32), 0.3)
    assert order.tolist() == [0, 1, 2]


@pytest.mark.parametrize("bad", [{"weight": -0.1}, {"candidates": 0},
                                 {"ngram_min": 4, "ngram_max": 3}])
def test_bad_hybrid_configs_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="hybrid"):
        HybridConfig(**bad)


@pytest.fixture
def docs_index(tmp_path: Path, tiny_retriever) -> Index:
    index = Index.create(tmp_path / "docs", tiny_retriever, SegmenterConfig())
    index.add_texts([(k, v) for k, v in TRANSCRIPTS.items()], tiny_retriever)
    return index


@pytest.fixture
def topics_index(tmp_path: Path, tiny_retriever) -> Index:
    index = Index.create(tmp_path / "topics", tiny_retriever, SegmenterConfig())
    index.add_texts(list(TOPICS.items()), tiny_retriever)
    return index


def test_hybrid_search_reranks_by_cosine_plus_weighted_match(docs_index: Index,
                                                             tiny_retriever) -> None:
    query = "Bornean orangutan"
    vec = tiny_retriever.encode_text([query])
    dense = docs_index.search(vec, k=3)[0]
    assert docs_index.search(vec, 3, [query], HybridConfig(weight=0.0))[0] == dense
    hybrid = docs_index.search(vec, 3, [query], HybridConfig(weight=0.3))[0]
    cosine = {h.source: h.score for h in dense}
    match = dict(zip(TRANSCRIPTS, docs_index.lexical_scorer(HybridConfig()).scores(
        query, [r["id"] for r in docs_index.segments.to_arrow().select(["id"]).to_pylist()]),
        strict=True))
    assert hybrid[0].source == "ape"
    for h in hybrid:  # every score is the cosine plus 0.3 x the lexical match
        assert h.score == pytest.approx(cosine[h.source] + 0.3 * match[h.source], abs=1e-5)
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)
    with pytest.raises(ValueError, match="text beside its vector"):
        docs_index.search(vec, 3, None, HybridConfig())


def test_the_lexical_model_follows_new_rows(docs_index: Index, tiny_retriever) -> None:
    query = "pterodactyl"
    docs_index.search(tiny_retriever.encode_text([query]), 3, [query], HybridConfig())
    docs_index.add_texts([("wing", "a pterodactyl was a flying reptile")], tiny_retriever)
    hits = docs_index.search(tiny_retriever.encode_text([query]), 4, [query],
                             HybridConfig(weight=10.0))[0]
    assert hits[0].source == "wing" and len(hits) == 4


def test_search_cli_hybrid(docs_index: Index, topics_index: Index, speech_dir: Path) -> None:
    args = ["search", "--index", str(docs_index.path), "--query", "Bornean orangutan",
            "--k", "1", "--json"]
    result = runner.invoke(app, [*args, "--hybrid", "0.3"])
    assert result.exit_code == 0, result.output
    assert '"source": "ape"' in result.stdout
    # a spoken question: its words are what the index's model heard in it
    result = runner.invoke(app, ["search", "--index", str(topics_index.path), "--query-audio",
                                 str(speech_dir / "violin.wav"), "--hybrid", "0.3", "--k", "3",
                                 "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["source"] == "violin" and hits[0]["score"] > hits[1]["score"]
    result = runner.invoke(app, [*args, "--hybrid", "-1"])
    assert result.exit_code != 0


def test_an_index_without_transcripts_names_itself(tmp_path: Path, tiny_retriever) -> None:
    index = Index.create(tmp_path / "docs", tiny_retriever, SegmenterConfig())
    index.add_texts([("a", "")], tiny_retriever)
    with pytest.raises(IndexConfigError, match=f"{tmp_path / 'docs'}: no segment has a"):
        index.search(tiny_retriever.encode_text(["x"]), 1, ["x"], HybridConfig())
