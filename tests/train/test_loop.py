"""The training loop's helpers that do not need a corpus."""

from __future__ import annotations

import pytest
import torch

from speechrag.models.ctc import CtcHead
from speechrag.train.loop import load_init_weights


def _heads(blocks: int, seed: int) -> CtcHead:
    torch.manual_seed(seed)
    return CtcHead(8, torch.randn(5, 6), blocks)


def test_a_deeper_head_starts_as_the_trained_one() -> None:
    trained = _heads(1, 0)
    with torch.no_grad():  # as if trained: not the fresh init of the deeper head
        for p in trained.parameters():
            p.add_(0.1 * torch.randn_like(p))
    deeper = _heads(3, 1)
    identity = load_init_weights(deeper, trained.state_dict())
    assert identity == ["blocks.1", "blocks.2"]
    h = torch.randn(2, 7, 8)
    torch.testing.assert_close(deeper(h), trained(h))
    # the new blocks learn: their output projections get a gradient at once
    deeper(h).logsumexp(-1).sum().backward()
    assert deeper.blocks[1].down.weight.grad.abs().sum() > 0


def test_the_same_depth_loads_unchanged_and_a_misfit_is_refused() -> None:
    trained = _heads(2, 0)
    same = _heads(2, 1)
    assert load_init_weights(same, trained.state_dict()) == []
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(same.state_dict()[k], v, msg=k)
    with pytest.raises(ValueError, match="do not fit"):
        load_init_weights(_heads(1, 2), trained.state_dict())  # blocks.1 has nowhere to go
    with pytest.raises(ValueError, match="do not fit"):
        load_init_weights(CtcHead(4, torch.randn(5, 6), 1), trained.state_dict())


def test_an_added_conv_block_starts_as_a_pass_through() -> None:
    trained = _heads(1, 0)
    torch.manual_seed(3)
    wider = CtcHead(8, torch.randn(5, 6), 1, conv_blocks=1, conv_kernel=3)
    assert load_init_weights(wider, trained.state_dict()) == ["convs.0"]
    h = torch.randn(2, 7, 8)
    torch.testing.assert_close(wider(h), trained(h))
    wider(h).logsumexp(-1).sum().backward()
    assert wider.convs[0].down.weight.grad.abs().sum() > 0


def test_one_schedule_warms_up_then_decays_to_a_tenth() -> None:
    from speechrag.train.loop import lr_at

    rates = [lr_at(s, 1e-3, 10, 100) for s in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))  # no bump
    assert lr_at(100, 1e-3, 10, 100) == pytest.approx(1e-4)  # the floor, and it stays
    assert lr_at(500, 1e-3, 10, 100) == pytest.approx(1e-4)
