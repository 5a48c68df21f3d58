from __future__ import annotations

import json

import numpy as np
import pytest

from speechrag.evaluate import GOLD_TEXT, evaluate, non_overlapping_cover, retriever_for
from speechrag.segment import Segment, SegmenterConfig


def test_non_overlapping_cover() -> None:
    rows = [{"start": s, "end": min(s + 40, 100)} for s in (0, 20, 40, 60)]
    assert [r["start"] for r in non_overlapping_cover(rows)] == [0, 40]
    rows = [{"start": s, "end": s + 40} for s in (0, 20, 40, 60)]
    assert [r["start"] for r in non_overlapping_cover(rows)] == [0, 40]


def test_gold_text_spreads_words_over_the_span(tiny_corpus) -> None:
    r = retriever_for(GOLD_TEXT, tiny_corpus)
    m = tiny_corpus.manifest[0]
    src = str(tiny_corpus.root / m["audio"])
    words = m["text"].split()
    mid = (m["start"] + m["end"]) / 2
    first = r.text_of(Segment(src, 0.0, mid, np.zeros(0)))
    second = r.text_of(Segment(src, mid, m["end"], np.zeros(0)))
    assert (first + " " + second).split() == words
    assert abs(len(first.split()) - len(words) / 2) <= 1


def test_cascade_on_the_tiny_corpus(tiny_corpus, tiny_retriever, tmp_path) -> None:
    seg = SegmenterConfig(window_s=40, hop_s=20)
    report = evaluate(tiny_corpus, "cascade-tiny", tmp_path, segmenter=seg,
                      retriever=tiny_retriever)
    overall = report["retrieval"]["overall"]
    assert overall["n"] == len(tiny_corpus.queries)
    assert overall["R@1"] >= 0.5 and overall["R@10"] >= overall["R@5"] >= overall["R@1"]
    assert set(report["retrieval"]["by_kind"]) <= {"title", "description"}
    assert set(report["retrieval"]["by_voice"]) == {"flite:slt", "festival:kal_diphone"}
    assert 0 < report["indexing"]["rtf"] < 1 and report["indexing"]["audio_s"] > 60
    assert 0 <= report["wer"] < 0.6
    assert report["query_latency_ms"]["p95"] >= report["query_latency_ms"]["p50"] > 0
    json.dumps(report)  # serializable as the JSON report
    # resumed: the index is reused and its recorded timing kept
    again = evaluate(tiny_corpus, "cascade-tiny", tmp_path, segmenter=seg,
                     retriever=tiny_retriever)
    assert again["indexing"] == report["indexing"]
    assert again["retrieval"] == report["retrieval"]


def test_gold_text_upper_bound(tiny_corpus, tmp_path) -> None:
    report = evaluate(tiny_corpus, GOLD_TEXT, tmp_path)
    assert report["retrieval"]["overall"]["R@1"] >= 0.75
    assert report["wer"] == pytest.approx(0.0, abs=0.02)
