from __future__ import annotations

import pytest
import torch

from speechrag.research.cif import CifPredictor, cif


def cif_loop(hidden: torch.Tensor, alphas: torch.Tensor, tail: float = 0.5) -> torch.Tensor:
    """The textbook integrate-and-fire, one frame at a time: hidden (T, D), alphas (T,)."""
    out, acc, emb = [], 0.0, torch.zeros(hidden.shape[1], dtype=hidden.dtype)
    for t in range(hidden.shape[0]):
        a = float(alphas[t])
        if acc + a < 1.0:
            acc += a
            emb = emb + a * hidden[t]
        else:
            need = 1.0 - acc
            out.append(emb + need * hidden[t])
            acc = a - need
            emb = acc * hidden[t]
    if acc >= tail:
        out.append(emb)
    return torch.stack(out) if out else torch.zeros(0, hidden.shape[1], dtype=hidden.dtype)


@pytest.mark.parametrize("seed", range(5))
def test_vectorized_equals_loop_reference(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    b, t, d = 4, 57, 6
    hidden = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    alphas = torch.rand(b, t, generator=g, dtype=torch.float64) * 0.6
    lengths = torch.tensor([57, 40, 13, 1])
    alphas = alphas * (torch.arange(t)[None] < lengths[:, None])  # padded frames fire nothing
    tokens, n = cif(hidden, alphas)
    for i in range(b):
        ref = cif_loop(hidden[i, : lengths[i]], alphas[i, : lengths[i]])
        assert int(n[i]) == ref.shape[0]
        torch.testing.assert_close(tokens[i, : n[i]], ref)
        assert torch.all(tokens[i, n[i]:] == 0)


def test_each_token_holds_one_unit_of_weight() -> None:
    hidden = torch.ones(1, 10, 1, dtype=torch.float64)
    alphas = torch.full((1, 10), 0.35, dtype=torch.float64)  # 3.5 in all
    tokens, n = cif(hidden, alphas)
    assert int(n[0]) == 4  # three whole tokens and a 0.5 tail
    torch.testing.assert_close(tokens[0, :, 0], torch.tensor([1, 1, 1, 0.5], dtype=torch.float64))


def test_no_fire_and_silence() -> None:
    hidden = torch.randn(2, 20, 3)
    tokens, n = cif(hidden, torch.zeros(2, 20))
    assert tokens.shape == (2, 0, 3) and n.tolist() == [0, 0]
    tokens, n = cif(hidden, torch.full((2, 20), 0.02))  # 0.4 in all: under the tail threshold
    assert n.tolist() == [0, 0]
    tokens, n = cif(hidden[:, :0], torch.zeros(2, 0))  # no frames at all
    assert tokens.shape == (2, 0, 3)


def test_boundary_frame_splits_its_weight() -> None:
    hidden = torch.tensor([[[1.0], [10.0], [100.0]]])
    tokens, n = cif(hidden, torch.tensor([[0.6, 0.8, 0.6]]))
    # token 0: 0.6*1 + 0.4*10; token 1: 0.4*10 + 0.6*100; tail 0.0 < 0.5 does not fire
    assert n.tolist() == [2]
    torch.testing.assert_close(tokens[0, :, 0], torch.tensor([4.6, 64.0]))


def test_predictor_scales_to_target_and_passes_gradients() -> None:
    torch.manual_seed(0)
    pred = CifPredictor(d_model=8)
    hidden = torch.randn(3, 30, 8, requires_grad=True)
    mask = torch.arange(30)[None] < torch.tensor([30, 25, 9])[:, None]
    target = torch.tensor([7, 5, 2])
    tokens, n, raw = pred(hidden, mask, target)
    assert tokens.shape == (3, 7, 8) and n.tolist() == [7, 5, 2]
    assert torch.all(raw[~mask] == 0) and torch.all((raw > 0)[mask])
    assert float(raw[mask].mean()) < 0.15  # the firing bias starts low
    (tokens.sum() + raw.sum()).backward()
    assert hidden.grad is not None and pred.proj.weight.grad is not None
    assert torch.isfinite(hidden.grad).all()
    free_tokens, free_n, _ = pred(hidden.detach(), mask)  # inference: counts from alphas
    assert free_tokens.shape[1] == int(free_n.max())
