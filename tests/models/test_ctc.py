from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speechrag.models.ctc import CtcHead, ctc_loss, greedy_tokens


def _path_logits(path: list[list[int]], classes: int = 6) -> torch.Tensor:
    """(B, S, classes) logits whose best class at each state is the given one."""
    return F.one_hot(torch.tensor(path), classes).float() * 10


def test_greedy_tokens_merges_runs_and_drops_blanks() -> None:
    # blank, 3, 3, blank, 3, 5, 5, blank -> tokens 3, 3, 5 starting at states 1, 4, 5
    logits = _path_logits([[0, 3, 3, 0, 3, 5, 5, 0], [2, 2, 2, 0, 0, 0, 0, 0]])
    mask = torch.ones(2, 8, dtype=torch.bool)
    first, n = greedy_tokens(logits, mask, max_tokens=100)
    assert n.tolist() == [3, 1]
    assert first[0].tolist() == [1, 4, 5] and first[1, 0] == 0
    best = logits.argmax(-1)
    assert best[0, first[0]].tolist() == [3, 3, 5]


def test_greedy_tokens_ignores_padding_and_caps_the_count() -> None:
    logits = _path_logits([[1, 0, 2, 0, 3, 4], [0, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    first, n = greedy_tokens(logits, mask, max_tokens=100)
    assert n.tolist() == [2, 0]  # tokens on padding are not counted
    assert first.shape == (2, 2) and first[0].tolist() == [0, 2]
    first, n = greedy_tokens(logits, torch.ones(2, 6, dtype=torch.bool), max_tokens=2)
    assert n.tolist() == [2, 0] and first[0].tolist() == [0, 2]  # the first two kept
    _, n = greedy_tokens(logits[1:], mask[1:], max_tokens=5)
    assert n.tolist() == [0]  # silence: no token, one padded column


def test_ctc_loss_prefers_the_right_path_and_ignores_padding() -> None:
    targets = torch.tensor([[2, 2, 4], [1, -100, -100]])  # local ids; class = id + 1
    path = [[0, 3, 0, 3, 5, 5], [2, 2, 0, 0, 0, 0]]
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    right = ctc_loss(_path_logits(path), mask, targets, -100)
    wrong = ctc_loss(_path_logits([[0, 1, 0, 1, 1, 1], [3, 3, 0, 0, 0, 0]]), mask, targets,
                     -100)
    assert right < 0.01 < 5 < wrong
    alone = ctc_loss(_path_logits(path)[1:, :3], mask[1:, :3], targets[1:, :1], -100)
    first = ctc_loss(_path_logits(path)[:1], mask[:1], targets[:1], -100)
    torch.testing.assert_close(right, (alone + first) / 2)


def test_head_is_tied_to_the_word_embeddings_and_trains() -> None:
    torch.manual_seed(0)
    words = torch.randn(7, 12)
    head = CtcHead(16, words)
    h = torch.randn(2, 9, 16, requires_grad=True)
    logits = head(h)
    assert logits.shape == (2, 9, 8)
    loss = ctc_loss(logits, torch.ones(2, 9, dtype=torch.bool), torch.tensor([[1, 2], [3, 3]]),
                    -100)
    loss.backward()
    assert h.grad is not None and head.to_word_space.weight.grad is not None
    assert not any(n.startswith("word_embeddings") for n, _ in head.named_parameters())


def test_feed_forward_blocks_start_near_the_linear_head_and_train() -> None:
    """Blocks are residual: the head with them reads the states like the linear head plus
    a correction, and the loss reaches every block."""
    torch.manual_seed(0)
    words = torch.randn(7, 12)
    head = CtcHead(16, words, blocks=2)
    assert len(head.blocks) == 2
    h = torch.randn(2, 9, 16)
    loss = ctc_loss(head(h), torch.ones(2, 9, dtype=torch.bool), torch.tensor([[1, 2], [3, 3]]),
                    -100)
    loss.backward()
    for block in head.blocks:
        assert block.up.weight.grad is not None and block.up.weight.grad.abs().sum() > 0
    linear = CtcHead(16, words)
    assert len(linear.blocks) == 0 and set(linear.state_dict()) < set(head.state_dict())


def test_conv_blocks_see_neighbours_and_ignore_padding() -> None:
    """A convolution block mixes neighbouring states (a feed-forward block does not), a
    row's logits do not depend on the padding it is batched with, and the loss reaches
    the depthwise kernel."""
    torch.manual_seed(0)
    words = torch.randn(7, 12)
    head = CtcHead(16, words, blocks=1, conv_blocks=1, conv_kernel=5)
    h = torch.randn(1, 9, 16)
    moved = h.clone()
    moved[0, 4] += torch.randn(16)  # change one state: it and its neighbours within 2
    # change, the rest not
    diff = (head(moved) - head(h)).abs().amax(-1)[0]
    assert (diff[2:7] > 1e-6).all() and (diff[:2] < 1e-6).all() and (diff[7:] < 1e-6).all()
    ff = CtcHead(16, words, blocks=1)
    diff_ff = (ff(moved) - ff(h)).abs().amax(-1)[0]
    assert diff_ff[4] > 1e-6 and (diff_ff[torch.arange(9) != 4] < 1e-6).all()
    padded = torch.cat([h, torch.randn(1, 4, 16)], dim=1)  # garbage after the real states
    mask = torch.tensor([[True] * 9 + [False] * 4])
    torch.testing.assert_close(head(padded, mask)[:, :9], head(h), atol=1e-5, rtol=1e-5)
    loss = ctc_loss(head(h), torch.ones(1, 9, dtype=torch.bool), torch.tensor([[1, 2]]), -100)
    loss.backward()
    assert head.convs[0].depthwise.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="odd"):
        CtcHead(16, words, conv_blocks=1, conv_kernel=4)
