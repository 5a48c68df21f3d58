from __future__ import annotations

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
