from __future__ import annotations

import torch

from speechrag.research.nar_decoder import NarDecoder, NarDecoderConfig


def make(v: int = 50, e: int = 12) -> NarDecoder:
    torch.manual_seed(0)
    cfg = NarDecoderConfig(d_model=16, n_layer=2, n_head=2, d_ff=32, dropout=0.0)
    return NarDecoder(cfg, d_encoder=24, word_embeddings=torch.randn(v, e))


def test_shapes_padding_and_independence_from_padding() -> None:
    dec = make().eval()
    tokens = torch.randn(2, 6, 16)
    memory = torch.randn(2, 30, 24)
    n = torch.tensor([6, 3])
    mem_mask = torch.arange(30)[None] < torch.tensor([30, 20])[:, None]
    logits = dec(tokens, n, memory, mem_mask)
    assert logits.shape == (2, 6, 50) and torch.isfinite(logits).all()
    alone = dec(tokens[1:, :3], n[1:], memory[1:, :20])  # same item without padding
    torch.testing.assert_close(logits[1, :3], alone[0], atol=1e-5, rtol=1e-5)


def test_rows_without_tokens_stay_finite() -> None:
    dec = make().eval()
    logits = dec(torch.randn(2, 4, 16), torch.tensor([4, 0]), torch.randn(2, 10, 24))
    assert torch.isfinite(logits).all()


def test_learns_to_copy_a_token_sequence() -> None:
    """A few hundred steps on a toy task: logits must come to name the target tokens."""
    dec = make(v=20)
    torch.manual_seed(1)
    targets = torch.randint(0, 20, (8, 5))
    tokens = torch.randn(20, 16)[targets]  # each token id seen through CIF as a fixed code
    memory = torch.randn(8, 10, 24)
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    for _ in range(300):
        logits = dec(tokens, torch.full((8,), 5), memory)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dec.eval()
    acc = (dec(tokens, torch.full((8,), 5), memory).argmax(-1) == targets).float().mean()
    assert acc > 0.95
    assert dec.word_embeddings.requires_grad is False
