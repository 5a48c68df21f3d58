from __future__ import annotations

import torch

from speechrag.research.glancing import glancing_mask

IGNORE = -100


def test_reveals_ratio_of_errors_on_real_positions_only() -> None:
    targets = torch.tensor([[5, 6, 7, 8, 9, 10], [1, 2, 3, IGNORE, IGNORE, IGNORE]])
    predicted = torch.tensor([[0, 0, 0, 0, 9, 10], [0, 0, 0, 4, 4, 4]])  # 4 and 3 wrong
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        m = glancing_mask(predicted, targets, 0.5, IGNORE, generator=g)
        assert m.sum(1).tolist() == [2, 1]  # floor(0.5 x 4), floor(0.5 x 3)
        assert not m[1, 3:].any()  # padding is never revealed
    full = glancing_mask(predicted, targets, 1.0, IGNORE, generator=g)
    assert full.sum(1).tolist() == [4, 3]
    assert full[1, :3].all()


def test_positions_are_drawn_at_random() -> None:
    targets = torch.arange(10)[None]
    predicted = torch.full((1, 10), -1)
    g = torch.Generator().manual_seed(1)
    seen = torch.zeros(10)
    for _ in range(400):
        seen += glancing_mask(predicted, targets, 0.3, IGNORE, generator=g)[0].float()
    assert seen.sum() == 1200
    assert seen.min() > 60 and seen.max() < 180  # about 120 each, none favoured


def test_nothing_revealed_when_right_or_off() -> None:
    targets = torch.tensor([[3, 4, 5], [6, 7, IGNORE]])
    assert not glancing_mask(targets.clone(), targets, 0.75, IGNORE).any()
    assert not glancing_mask(torch.zeros_like(targets), targets, 0.0, IGNORE).any()
