"""benchmarks/ctc_decoding.py: the prefix beam search must find CTC's most probable
labelling (checked against enumerating every path), the n-gram LM must be a probability
distribution for every history, and fusion must let the LM settle what the acoustics
leave open."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import pytest
import torch

from speechrag.models.ctc import greedy_tokens

SCRIPT = Path(__file__).parents[2] / "benchmarks/ctc_decoding.py"
spec = importlib.util.spec_from_file_location("ctc_decoding", SCRIPT)
ctc_decoding = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ctc_decoding)


def _labelling_log_probs(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """Every path of (T, C) enumerated: labelling (local ids) -> log of its total
    probability."""
    total: dict[tuple[int, ...], float] = {}
    lp = log_probs.tolist()
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        labels, prev = [], 0
        for c in path:
            if c != 0 and c != prev:
                labels.append(c - 1)
            prev = c
        p = sum(lp[t][c] for t, c in enumerate(path))
        key = tuple(labels)
        total[key] = p if key not in total else float(torch.logaddexp(
            torch.tensor(total[key]), torch.tensor(p)))
    return total


@pytest.mark.parametrize("seed", range(5))
def test_beam_search_finds_the_most_probable_labelling(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.log_softmax(torch.randn(6, 4, generator=g) * 2, dim=-1)
    exact = _labelling_log_probs(log_probs)
    best = max(exact, key=exact.get)
    # a beam wider than the 1,093 labellings of 6 states: nothing is pruned, so it is exact
    found = ctc_decoding.prefix_beam_search(log_probs, beam=2000, top_k=4, floor=-1e9)
    assert tuple(found[0][0]) == best
    assert found[0][1] == pytest.approx(exact[best], abs=1e-6)
    # every returned prefix carries its exact probability, best first
    for ids, score in found[:5]:
        assert score == pytest.approx(exact[tuple(ids)], abs=1e-6)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)


def test_greedy_path_matches_the_library_greedy_tokens() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 40, 5, generator=g)
    first, n = greedy_tokens(logits, torch.ones(1, 40, dtype=torch.bool), max_tokens=100)
    best = logits[0].argmax(-1)
    expected = (best[first[0, : int(n[0])]] - 1).tolist()
    assert ctc_decoding.greedy_path(torch.log_softmax(logits[0], -1)) == expected


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ngram_lm_is_a_distribution_for_every_history(order: int) -> None:
    lm = ctc_decoding.NgramLM([[0, 1, 2, 1], [1, 2, 3], [4]], vocab=6, order=order)
    for prefix in ([], [0], [0, 1], [1, 2], [5, 5], [3, 4, 0]):
        h = lm.history(prefix)
        assert sum(math.exp(lm.logp(h, w)) for w in range(6)) == pytest.approx(1.0)
    if order > 1:  # a seen continuation beats an unseen one
        h = lm.history([1])
        assert lm.logp(h, 2) > lm.logp(h, 0)


def test_lm_fusion_settles_an_ambiguous_token() -> None:
    # two states; the second cannot tell tokens 1 and 2 apart, the LM has only seen 0 2
    log_probs = torch.log(torch.tensor([[0.05, 0.9, 0.025, 0.025],
                                        [0.1, 0.05, 0.425, 0.425]]))
    lm = ctc_decoding.NgramLM([[0, 2]] * 20, vocab=3, order=2)
    plain = ctc_decoding.prefix_beam_search(log_probs, beam=8)[0][0]
    fused = ctc_decoding.prefix_beam_search(log_probs, beam=8, lm=lm, alpha=1.0)[0][0]
    assert plain[0] == 0 and fused == [0, 2]
    assert ctc_decoding.prefix_beam_search(log_probs, beam=8, lm=lm, alpha=1.0,
                                           beta=0.0)[0][1] < 0
