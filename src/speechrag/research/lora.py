"""Low-rank adapters (LoRA, Hu et al. 2021) on a frozen model's linear layers.

``y = W x + (alpha / r) B A x`` with A (r, in) and B (out, r); B starts at zero, so an
adapted model starts as the pretrained one and only A and B train. Written here rather
than taken from ``peft``: the project needs one wrapper for the BERT-like text encoder's
linear layers and a state dict of the adapter weights alone (what a checkpoint ships),
about forty lines, where peft would add a dependency and its own save format.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``rank`` update.

    x (..., in) -> (..., out)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (x @ self.lora_a.T.to(x.dtype)) @ self.lora_b.T.to(x.dtype)
        return self.base(x) + self.scale * update


def add_lora(model: nn.Module, rank: int, alpha: float) -> list[str]:
    """Replace every ``nn.Linear`` inside ``model``'s Transformer layers (attention and
    feed-forward; not the pooler) by a :class:`LoraLinear`, in place. Returns the names
    of the wrapped layers, in order."""
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and ".layer." in f".{full}" \
                    and "pooler" not in full:
                setattr(module, child_name, LoraLinear(child, rank, alpha))
                wrapped.append(full)
    return wrapped


def is_lora_weight(name: str) -> bool:
    """Whether a state-dict key is an adapter weight (what a checkpoint keeps)."""
    return name.endswith((".lora_a", ".lora_b"))


def adapted_copy(model: nn.Module, rank: int, alpha: float | None = None) -> nn.Module:
    """A deep copy of ``model``, every weight frozen, with rank-``rank`` adapters on its
    Transformer layers (alpha defaults to 2 x rank); the original is left untouched."""
    twin = copy.deepcopy(model)
    for p in twin.parameters():
        p.requires_grad_(False)
    add_lora(twin, rank, 2.0 * rank if alpha is None else alpha)
    return twin
