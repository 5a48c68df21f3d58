from __future__ import annotations

import math

import pytest
import torch

from speechrag.models.losses import ClsrLoss, info_nce, quantity_loss


def test_info_nce_prefers_matching_pairs() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    aligned = info_nce(x, x + 0.01 * torch.randn(8, 16))
    shuffled = info_nce(x, x.roll(1, dims=0))
    assert aligned < 0.01 < math.log(8) < shuffled


def test_info_nce_matches_a_hand_computed_case() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    sim = torch.tensor([[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]]) / 0.5
    expected = -(torch.log_softmax(sim, 1)[0, 0] + torch.log_softmax(sim, 1)[1, 1]) / 2
    torch.testing.assert_close(info_nce(q, k, temperature=0.5), expected)
    both = (expected - (torch.log_softmax(sim.T, 1)[0, 0] + torch.log_softmax(sim.T, 1)[1, 1]) / 2)
    torch.testing.assert_close(info_nce(q, k, temperature=0.5, symmetric=True), both / 2)


def test_quantity_loss() -> None:
    alphas = torch.tensor([[0.5, 0.5, 0.0], [1.0, 1.0, 1.0]])
    assert float(quantity_loss(alphas, torch.tensor([1, 2]))) == pytest.approx(0.5)


def test_clsr_loss_weights_and_gradients() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 9, requires_grad=True)
    targets = torch.tensor([[1, 2, 3, -100], [4, 5, -100, -100]])
    alphas = torch.rand(2, 12, requires_grad=True)
    q, s = torch.randn(2, 6), torch.randn(2, 6, requires_grad=True)
    out = ClsrLoss()(logits, targets, alphas, torch.tensor([3, 2]), q, s)
    parts = (out["ce"] + out["mae"] + out["nll"]) / 3
    torch.testing.assert_close(out["loss"], parts)
    out["loss"].backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (logits, alphas, s))
    with pytest.raises(ValueError, match="loss weights"):
        ClsrLoss(a=0.7, b=0.5)
