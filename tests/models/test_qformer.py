from __future__ import annotations

import pytest
import torch

from speechrag.models.qformer import QFormerConfig, WindowQFormer


def _model(**kw) -> WindowQFormer:
    torch.manual_seed(0)
    return WindowQFormer(QFormerConfig(input_dim=16, dim=32, heads=4, dropout=0.0, **kw)).eval()


def test_shapes_and_token_mask():
    m = _model(window=5, queries=3)
    states = torch.randn(2, 12, 16)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, :12] = True
    mask[1, :4] = True  # one window of real states, two of padding
    tokens, token_mask = m(states, mask)
    assert tokens.shape == (2, 9, 32)  # ceil(12 / 5) = 3 windows x 3 queries
    assert m.n_tokens(12) == 9 and m.n_tokens(4) == 3
    assert token_mask[0].all()
    assert token_mask[1].tolist() == [True] * 3 + [False] * 6
    assert torch.isfinite(tokens).all()
    assert (tokens[1, 3:] == 0).all()  # windows of padding only come out as zeros


def test_padding_never_changes_real_tokens():
    """A clip's tokens are the same alone and padded in a batch with a longer one."""
    m = _model(window=4, queries=2)
    a = torch.randn(1, 10, 16)
    alone, _ = m(a, torch.ones(1, 10, dtype=torch.bool))
    batch = torch.cat([torch.nn.functional.pad(a, (0, 0, 0, 7)), torch.randn(1, 17, 16)])
    mask = torch.arange(17)[None] < torch.tensor([10, 17])[:, None]
    padded, token_mask = m(batch, mask)
    n = m.n_tokens(10)
    torch.testing.assert_close(padded[0, :n], alone[0], rtol=1e-5, atol=1e-5)
    assert token_mask[0, :n].all() and not token_mask[0, n:].any()


def test_a_window_sees_only_its_own_states():
    m = _model(window=4, queries=1)
    x = torch.randn(1, 12, 16)
    mask = torch.ones(1, 12, dtype=torch.bool)
    before, _ = m(x, mask)
    y = x.clone()
    y[0, 8:] += 5.0  # change the last window only
    after, _ = m(y, mask)
    torch.testing.assert_close(after[0, :2], before[0, :2])
    assert not torch.allclose(after[0, 2], before[0, 2])


def test_gradients_reach_every_parameter():
    m = _model(window=4, queries=2).train()
    tokens, _ = m(torch.randn(2, 9, 16), torch.ones(2, 9, dtype=torch.bool))
    tokens.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="dim must be a positive multiple of heads"):
        QFormerConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="window"):
        QFormerConfig(window=0)
    with pytest.raises(ValueError, match="unknown key"):
        QFormerConfig.from_dict({"windows": 3})
