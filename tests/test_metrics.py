from __future__ import annotations

import math

import pytest

from speechrag.metrics import (
    first_correct_rank,
    is_correct,
    mrr,
    normalize_text,
    recall_at,
    retrieval_summary,
    wer,
)


@pytest.mark.parametrize(
    ("hit", "gold", "ok"),
    [
        (("a", 0, 40), ("a", 10, 30), True),   # gold inside the window
        (("a", 0, 40), ("a", 30, 50), True),   # 10 s overlap == 0.5 * 20 s: boundary counts
        (("a", 0, 40), ("a", 31, 51), False),  # 9 s overlap < 10 s
        (("a", 20, 60), ("a", 0, 90), True),   # window inside a long passage
        (("b", 0, 40), ("a", 0, 40), False),   # other recording
        (("a", 40, 80), ("a", 0, 40), False),  # touching is not overlapping
    ],
)
def test_hit_rule(hit: tuple, gold: tuple, ok: bool) -> None:
    assert is_correct(*hit, *gold) is ok


def test_ranks_and_recall() -> None:
    golds = [("a", 10.0, 30.0)]
    hits = [("b", 0.0, 40.0), ("a", 40.0, 80.0), ("a", 0.0, 40.0)]
    assert first_correct_rank(hits, golds) == 3
    assert first_correct_rank(hits[:2], golds) is None
    ranks = [1, 3, None, 12]
    assert recall_at(ranks, 1) == 0.25
    assert recall_at(ranks, 5) == 0.5
    assert recall_at(ranks, 10) == 0.5
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 12) / 4)
    s = retrieval_summary(ranks)
    assert s["n"] == 4 and s["R@1"] == 0.25
    assert math.isnan(recall_at([], 1))


def test_wer() -> None:
    assert wer(["the cat sat"], ["The cat, sat."]) == 0
    assert wer(["the cat sat on the mat"], ["the cat sat on mat"]) == pytest.approx(1 / 6)
    assert wer(["a b", "c d e f"], ["a x", ""]) == pytest.approx(5 / 6)
    assert normalize_text("Well-known, 1901!") == "well known 1901"


def test_ranks_of_truth() -> None:
    import numpy as np

    from speechrag.metrics import ranks_of_truth

    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.4, 0.4, 0.1]])
    assert ranks_of_truth(scores, [0, 0, 1]) == [1, 3, 1]  # a tie counts for the truth
