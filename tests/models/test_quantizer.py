from __future__ import annotations

import torch

from speechrag.models.quantizer import VQAdaptor, straight_through_one_hot


def test_forward_is_the_argmax_token_embedding() -> None:
    torch.manual_seed(0)
    table = torch.randn(11, 4)
    logits = torch.randn(2, 5, 11)
    emb, ids = VQAdaptor(table)(logits)
    torch.testing.assert_close(emb, table[logits.argmax(-1)])
    assert torch.equal(ids, logits.argmax(-1))


def test_gradient_is_the_softmax_gradient() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 7, requires_grad=True)
    w = torch.randn(3, 7)
    (straight_through_one_hot(logits, 0.1) * w).sum().backward()
    ref = logits.detach().clone().requires_grad_(True)
    (torch.softmax(ref / 0.1, -1) * w).sum().backward()
    torch.testing.assert_close(logits.grad, ref.grad)
    assert logits.grad.abs().sum() > 0


def test_embedding_table_is_not_trained() -> None:
    adaptor = VQAdaptor(torch.randn(5, 2))
    assert list(adaptor.parameters()) == []
