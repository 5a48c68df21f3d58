"""Retrieval and transcription metrics, one definition for every system.

A hit is correct iff it comes from the same recording as a gold span and
overlaps it by at least half of the shorter of the two:
``overlap(hit, gold) >= 0.5 * min(len(hit), len(gold))``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

MIN_OVERLAP = 0.5


def is_correct(source: str, start: float, end: float,
               gold_source: str, gold_start: float, gold_end: float) -> bool:
    """The hit rule above. Times in seconds; sources compared as given (normalize paths first)."""
    if source != gold_source:
        return False
    overlap = min(end, gold_end) - max(start, gold_start)
    return overlap > 0 and overlap >= MIN_OVERLAP * min(end - start, gold_end - gold_start)


def first_correct_rank(hits: Sequence[tuple[str, float, float]],
                       golds: Sequence[tuple[str, float, float]]) -> int | None:
    """1-based rank of the first hit matching any gold span, or None if none does."""
    for rank, (src, start, end) in enumerate(hits, start=1):
        if any(is_correct(src, start, end, gs, g0, g1) for gs, g0, g1 in golds):
            return rank
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Fraction of queries whose first correct hit is within the top k."""
    if not ranks:
        return float("nan")
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def mrr(ranks: Sequence[int | None]) -> float:
    """Mean reciprocal rank (0 for a query with no correct hit in the list)."""
    if not ranks:
        return float("nan")
    return sum(1.0 / r for r in ranks if r is not None) / len(ranks)


def ranks_of_truth(scores: np.ndarray, truth: Sequence[int]) -> list[int]:
    """scores (Q, P) of Q queries over P candidates, truth (Q,) the right candidate of each
    -> the rank (1 = best) of each query's right candidate (ties count in its favour)."""
    scores = np.asarray(scores)
    right = scores[np.arange(len(scores)), np.asarray(truth)]
    return ((scores > right[:, None]).sum(1) + 1).tolist()


def retrieval_summary(ranks: Sequence[int | None]) -> dict[str, float]:
    return {"n": len(ranks), "R@1": recall_at(ranks, 1), "R@5": recall_at(ranks, 5),
            "R@10": recall_at(ranks, 10), "MRR": mrr(ranks)}


_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def normalize_text(text: str) -> str:
    """Lowercase, punctuation and hyphens to spaces, whitespace collapsed (for WER)."""
    return " ".join(_NON_WORD.sub(" ", text.lower().replace("-", " ")).split())


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate over normalized text: total edits / total reference words."""
    import jiwer

    pairs = [(normalize_text(r), normalize_text(h))
             for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return float("nan")
    out = jiwer.process_words([r for r, _ in pairs], [h or "<empty>" for _, h in pairs])
    edits = out.substitutions + out.deletions + out.insertions
    return edits / sum(len(r.split()) for r, _ in pairs)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")
