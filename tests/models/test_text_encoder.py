from __future__ import annotations

import numpy as np
import pytest
import torch

from speechrag.models.text_encoder import TextEncoder

TEXTS = ["A volcano is a rupture in the crust of a planet.", "Bread is a staple food.",
         "Violin"]


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder("all-MiniLM-L6-v2")


def test_encode_is_normalized(minilm: TextEncoder) -> None:
    emb = minilm.encode(TEXTS)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_embedding_path_equals_the_text_path(minilm: TextEncoder) -> None:
    """Feeding the word embeddings of a text's tokens must give the text's own embedding."""
    ids = minilm.token_ids(TEXTS)
    n = max(len(i) for i in ids)
    padded = torch.tensor([i + [0] * (n - len(i)) for i in ids])
    with torch.no_grad():
        emb = minilm.encode_embeddings(minilm.word_embeddings[padded],
                                       torch.tensor([len(i) for i in ids]))
    ref = minilm.encode(TEXTS)
    np.testing.assert_allclose((emb.numpy() * ref).sum(1), 1.0, atol=1e-4)


def test_gradients_reach_the_input_embeddings(minilm: TextEncoder) -> None:
    x = minilm.word_embeddings[torch.tensor([[2000, 2001, 2002]])].detach().requires_grad_(True)
    minilm.encode_embeddings(x, torch.tensor([3])).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_hidden_states_pool_to_the_sentence_embedding() -> None:
    """The last layer's states, mean-pooled over [CLS] text [SEP], are the model's own
    sentence embedding (before normalisation); padding rows do not change it."""
    enc = TextEncoder("all-MiniLM-L6-v2")
    texts = ["a bowed string instrument", "where does lava come from in a volcano"]
    ids = enc.token_ids(texts)
    n = max(len(r) for r in ids)
    padded = torch.tensor([r + [0] * (n - len(r)) for r in ids])
    with torch.no_grad():
        layers, mask = enc.hidden_states(padded, torch.tensor([len(r) for r in ids]))
    assert len(layers) == 7 and layers[-1].shape == (2, n + 2, enc.dim)
    assert mask.sum(1).tolist() == [len(r) + 2 for r in ids]
    m = mask[..., None].float()
    pooled = torch.nn.functional.normalize((layers[-1] * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(pooled, torch.from_numpy(enc.encode(texts)), atol=1e-5,
                               rtol=1e-4)
