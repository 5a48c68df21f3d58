from __future__ import annotations

import torch
from torch import nn

from speechrag.models.text_encoder import TextEncoder
from speechrag.research.lora import LoraLinear, adapted_copy, add_lora, is_lora_weight


def test_lora_linear_starts_as_the_base_and_trains_only_its_update() -> None:
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    layer = LoraLinear(base, rank=2, alpha=4.0)
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), base(x))  # B starts at zero
    layer(x).sum().backward()
    assert base.weight.grad is None and base.bias.grad is None
    assert layer.lora_b.grad is not None and layer.lora_b.grad.abs().sum() > 0
    with torch.no_grad():
        layer.lora_b.normal_()
    expected = base(x) + 2.0 * x @ layer.lora_a.T @ layer.lora_b.T  # alpha / rank = 2
    torch.testing.assert_close(layer(x), expected)


def test_adapted_copy_of_the_text_encoder(text: TextEncoder) -> None:
    original = text.transformer
    before = {k: v.clone() for k, v in original.state_dict().items()}
    twin = adapted_copy(original, rank=4)
    # 6 layers x (query, key, value, attention output, intermediate, output)
    wrapped = [n for n, m in twin.named_modules() if isinstance(m, LoraLinear)]
    assert len(wrapped) == 36 and not any("pooler" in n for n in wrapped)
    trainable = [n for n, p in twin.named_parameters() if p.requires_grad]
    assert trainable and all(is_lora_weight(n) for n in trainable)
    ids = torch.tensor([[101, 7592, 2088, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        a = original(input_ids=ids, attention_mask=mask).last_hidden_state
        b = twin(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(a, b)  # the same encoder until it trains
    for k, v in original.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k]), k
    assert not any(isinstance(m, LoraLinear) for m in original.modules())


def test_add_lora_skips_linear_layers_outside_transformer_layers() -> None:
    model = nn.Module()
    model.head = nn.Linear(3, 3)
    assert add_lora(model, 2, 4.0) == [] and isinstance(model.head, nn.Linear)
