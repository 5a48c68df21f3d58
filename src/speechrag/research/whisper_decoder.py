"""Whisper's own text-decoder blocks, as the starting weights of CLSR's NAR decoder.

Issue 3's lever: CLSR's decoder has to learn from scratch how to read Whisper's encoder
states, and on the first GPU run it flattened at 67% WER. Whisper's decoder already
reads them: its cross-attention was trained on exactly these states. Its blocks are
pre-norm transformer decoder layers (self-attention, cross-attention, GELU MLP of 4 x
D, LayerNorm before each), which is :class:`torch.nn.TransformerDecoderLayer` with
``norm_first=True, activation="gelu"`` and the head count and width of the Whisper
model, so the weights load straight into CLSR's decoder; only the token embeddings stay
behind (CLSR's decoder reads CIF embeddings and writes the text encoder's vocabulary).
Whisper scales queries and keys each by d_head^-1/4, which is PyTorch's 1/sqrt(d_head)
on their product; its key projections have no bias (zeros here).

Read from the packaged CTranslate2 ``model.bin`` (:mod:`speechrag.models.ct2`); the layout,
per block ``decoder/layer_i/``: ``self_attention/linear_0`` (fused q, k, v),
``self_attention/linear_1`` (out), ``attention/linear_0`` (q), ``attention/linear_1``
(fused k, v of the encoder states), ``attention/linear_2`` (out), ``ffn/linear_0|1``, a
``layer_norm`` in each; then ``decoder/layer_norm``, ``decoder/position_encodings`` and
``decoder/embeddings`` (tied to the output projection).

Shapes: D model width, V Whisper's vocabulary (51,865 multilingual, 51,864 English-only),
P = 448 decoder positions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechrag.assets import resolve
from speechrag.models.ct2 import read_ct2


def read_whisper_decoder(whisper: str) -> dict[str, torch.Tensor]:
    """The decoder tensors of a CTranslate2 Whisper (asset name or directory), fp32,
    names without the ``decoder/`` prefix."""
    path = Path(resolve(whisper)) / "model.bin"
    if not path.is_file():
        raise ValueError(f"{whisper}: Whisper decoder weights are read from a CTranslate2 "
                         f"directory (model.bin), and {path} is not one")
    w = read_ct2(path, keep=lambda n: n.startswith("decoder/"))
    return {k.removeprefix("decoder/"): v.float() if v.is_floating_point() else v
            for k, v in w.items()}


def decoder_dims(w: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(width D, heads, blocks) of the decoder tensors of :func:`read_whisper_decoder`."""
    n_layer = 1 + max(int(k.split("/")[0].removeprefix("layer_")) for k in w
                      if k.startswith("layer_") and not k.startswith("layer_norm"))
    return w["layer_norm/gamma"].shape[0], int(w["num_heads"]), n_layer


def transformer_decoder_state(w: dict[str, torch.Tensor], n_layer: int
                              ) -> dict[str, torch.Tensor]:
    """Whisper's first ``n_layer`` blocks and its final LayerNorm as the state dict of a
    ``nn.TransformerDecoder(nn.TransformerDecoderLayer(D, heads, 4 * D, norm_first=True,
    activation="gelu", batch_first=True), n_layer, norm=nn.LayerNorm(D))``."""
    d, _, available = decoder_dims(w)
    if not 1 <= n_layer <= available:
        raise ValueError(f"{n_layer} decoder blocks asked; this Whisper has {available}")
    state = {"norm.weight": w["layer_norm/gamma"], "norm.bias": w["layer_norm/beta"]}
    for i in range(n_layer):
        src, dst = f"layer_{i}/", f"layers.{i}."
        cross_q = w[src + "attention/linear_0/weight"]
        cross_kv = w[src + "attention/linear_1/weight"]
        state |= {
            dst + "self_attn.in_proj_weight": w[src + "self_attention/linear_0/weight"],
            dst + "self_attn.in_proj_bias": w[src + "self_attention/linear_0/bias"],
            dst + "self_attn.out_proj.weight": w[src + "self_attention/linear_1/weight"],
            dst + "self_attn.out_proj.bias": w[src + "self_attention/linear_1/bias"],
            dst + "multihead_attn.in_proj_weight": torch.cat([cross_q, cross_kv]),
            dst + "multihead_attn.in_proj_bias": torch.cat(
                [w[src + "attention/linear_0/bias"], w[src + "attention/linear_1/bias"]]),
            dst + "multihead_attn.out_proj.weight": w[src + "attention/linear_2/weight"],
            dst + "multihead_attn.out_proj.bias": w[src + "attention/linear_2/bias"],
            dst + "linear1.weight": w[src + "ffn/linear_0/weight"],
            dst + "linear1.bias": w[src + "ffn/linear_0/bias"],
            dst + "linear2.weight": w[src + "ffn/linear_1/weight"],
            dst + "linear2.bias": w[src + "ffn/linear_1/bias"],
            dst + "norm1.weight": w[src + "self_attention/layer_norm/gamma"],
            dst + "norm1.bias": w[src + "self_attention/layer_norm/beta"],
            dst + "norm2.weight": w[src + "attention/layer_norm/gamma"],
            dst + "norm2.bias": w[src + "attention/layer_norm/beta"],
            dst + "norm3.weight": w[src + "ffn/layer_norm/gamma"],
            dst + "norm3.bias": w[src + "ffn/layer_norm/beta"],
        }
    if state["layers.0.self_attn.in_proj_bias"].shape[0] != 3 * d:
        raise ValueError("unexpected Whisper decoder layout: fused q, k, v bias of "
                         f"{state['layers.0.self_attn.in_proj_bias'].shape[0]}, not 3 x {d}")
    return state
