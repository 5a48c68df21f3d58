from __future__ import annotations

import json

import numpy as np
import pytest

from speechrag.evaluate import GOLD_TEXT, evaluate, non_overlapping_cover, retriever_for, safe_name
from speechrag.segment import Segment, SegmenterConfig


def test_non_overlapping_cover() -> None:
    rows = [{"start": s, "end": min(s + 40, 100)} for s in (0, 20, 40, 60)]
    assert [r["start"] for r in non_overlapping_cover(rows)] == [0, 40]
    rows = [{"start": s, "end": s + 40} for s in (0, 20, 40, 60)]
    assert [r["start"] for r in non_overlapping_cover(rows)] == [0, 40]


def test_safe_name_tells_training_runs_apart() -> None:
    assert safe_name("cascade") == "cascade"
    assert safe_name("presets/my model.json") == "my_model"
    assert safe_name("runs/abl-cos/model.pt") == "abl-cos-model"
    assert safe_name("runs/abl-wass/model.pt") == "abl-wass-model"
    assert safe_name("runs/abl-cos/last.pt") == "abl-cos-last"
    assert safe_name("model.pt") == "model"
    assert safe_name("runs/x/seal-step450.pt") == "seal-step450"


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


def test_spoken_queries_over_recordings(tiny_corpus, tiny_retriever, tmp_path) -> None:
    """The same audio index answers the corpus's queries spoken by evaluation voices."""
    import shutil

    from speechrag.corpus.build import load_corpus, speak_queries

    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.root, root)
    corpus = load_corpus(root)
    with pytest.raises(ValueError, match="speak-queries"):
        evaluate(corpus, "cascade-tiny", tmp_path / "out", retriever=tiny_retriever,
                 spoken=True)
    corpus = speak_queries(root, kinds=("description",))
    wanted = [q for q in corpus.queries if q["kind"] == "description"]
    assert [q["id"] for q in corpus.spoken_queries] == [q["id"] for q in wanted]
    assert {q["voice"] for q in corpus.spoken_queries} <= {"flite:slt", "festival:kal_diphone"}
    report = evaluate(corpus, "cascade-tiny", tmp_path / "out", retriever=tiny_retriever,
                      segmenter=SegmenterConfig(40, 20), spoken=True)
    assert report["queries_spoken"] and report["targets"] == "recordings"
    assert report["retrieval"]["overall"]["n"] == len(wanted)
    assert report["retrieval"]["overall"]["R@5"] >= 0.5
    from speechrag.corpus.tts import VoiceError

    with pytest.raises(VoiceError, match="reserved"):
        speak_queries(root, voices=("festival:ked_diphone",))


def test_spoken_queries_over_text_documents(tiny_retriever, tmp_path) -> None:
    """A "queries" corpus: no passage audio, its passages are text documents."""
    from speechrag.corpus.build import CorpusConfig, build_corpus, speak_queries

    root = tmp_path / "queries-only"
    corpus = build_corpus(CorpusConfig(split="test", passages=6, layout="queries"), root)
    assert corpus.manifest == [] and corpus.audio_files() == []
    assert len(corpus.documents) == 6
    speak_queries(root, kinds=("description",))
    from speechrag.corpus.build import load_corpus

    corpus = load_corpus(root)
    report = evaluate(corpus, "cascade-tiny", tmp_path / "out", retriever=tiny_retriever,
                      spoken=True)
    assert report["targets"] == "text documents" and report["wer"] is None
    assert report["indexing"]["rtf"] is None and report["indexing"]["n_segments"] == 6
    assert report["retrieval"]["overall"]["R@1"] >= 0.5
    written = evaluate(corpus, "cascade-tiny", tmp_path / "out", retriever=tiny_retriever)
    assert written["retrieval"]["overall"]["n"] == len(corpus.queries)
    from speechrag.report import eval_table, report_name

    assert report_name(report) == "cascade-tiny-spoken" and report_name(written) == "cascade-tiny"
    eval_table(report)
    # hybrid search on the same index: what Whisper heard in each spoken query is matched
    # against the documents' words; the report says so and is named apart
    from speechrag.lexical import HybridConfig

    mixed = evaluate(corpus, "cascade-tiny", tmp_path / "out", retriever=tiny_retriever,
                     spoken=True, hybrid=HybridConfig(weight=0.3))
    assert mixed["hybrid"]["weight"] == 0.3 and mixed["hybrid"]["fit_s"] >= 0
    assert report_name(mixed) == "cascade-tiny-hybrid-spoken"
    assert mixed["indexing"] == report["indexing"]  # no second indexing
    assert mixed["retrieval"]["overall"]["n"] == report["retrieval"]["overall"]["n"]
    assert mixed["retrieval"]["overall"]["R@1"] >= 0.5
    off = evaluate(corpus, "cascade-tiny", tmp_path / "out", retriever=tiny_retriever,
                   spoken=True, hybrid=HybridConfig(weight=0.0))
    assert off["hybrid"] is None and report_name(off) == "cascade-tiny-spoken"


def test_a_stale_cached_index_is_rebuilt(tiny_corpus, tmp_path) -> None:
    """The evaluator's index made by another checkpoint under the same model name (a
    retrained shipped model), or cut another way, is indexed afresh with a warning,
    instead of failing or scoring the wrong model."""
    seg = SegmenterConfig(window_s=40, hop_s=20)
    first = evaluate(tiny_corpus, GOLD_TEXT, tmp_path, segmenter=seg)
    config_file = next(tmp_path.glob("index-*/index.json"))
    stored = json.loads(config_file.read_text())
    built_with = stored["model"]["text_encoder"]
    stored["model"]["text_encoder"] = "all-mpnet-base-v2"  # as if another model built it
    config_file.write_text(json.dumps(stored))
    with pytest.warns(UserWarning, match="stale evaluation index.*indexing afresh"):
        again = evaluate(tiny_corpus, GOLD_TEXT, tmp_path, segmenter=seg)
    assert again["retrieval"] == first["retrieval"]
    assert json.loads(config_file.read_text())["model"]["text_encoder"] == built_with
    with pytest.warns(UserWarning, match="cut with"):
        other = evaluate(tiny_corpus, GOLD_TEXT, tmp_path,
                         segmenter=SegmenterConfig(window_s=30, hop_s=15))
    assert other["retrieval"]["overall"]["n"] == first["retrieval"]["overall"]["n"]
