"""The sentence encoder without torch: ONNX Runtime and ``tokenizers`` (the query path).

A written question needs one forward pass of a small BERT, which takes milliseconds; but
loading sentence-transformers (and with it torch and transformers) takes 3-4 s on 2
cores, longer than everything else a ``speechrag search`` does. So the same weights are
exported once to ONNX (the transformer and its pooling in one graph, by torch's exporter:
:func:`export`, run by ``make install`` for the shipped encoder and otherwise on first
use), and a query is then tokenized by the model's own ``tokenizer.json`` and run by ONNX
Runtime, which imports in about 0.1 s.

Only plain sentence-transformers models are taken (a Transformer, a mean or CLS
Pooling, optionally Normalize, and a ``tokenizer.json``); anything else is
:class:`Unsupported`, and the caller uses :class:`~speechrag.models.text_encoder.TextEncoder`.
The vectors equal TextEncoder's within float tolerance (tests/models/test_onnx_text.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechrag.assets import cache_dir, resolve

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
OPSET = 17


class Unsupported(ValueError):
    """The model is not a plain Transformer + Pooling sentence encoder."""


@dataclass(frozen=True)
class SentenceModel:
    """What the ONNX path needs to know about a sentence-transformers folder."""

    path: Path
    weights: Path
    pooling: str  # "mean" | "cls"
    max_length: int
    pad_token: str

    @classmethod
    def read(cls, name: str) -> SentenceModel:
        path = Path(resolve(name))
        if not path.is_dir():
            raise Unsupported(f"{name}: not a local model folder")
        modules = _json(path / "modules.json", [])
        types = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if types[:2] != ["Transformer", "Pooling"] or any(t != "Normalize" for t in types[2:]):
            raise Unsupported(f"{name}: modules {types}, not Transformer + Pooling")
        weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if weights is None or not (path / "tokenizer.json").is_file():
            raise Unsupported(f"{name}: no weights file or tokenizer.json")
        pool = _json(path / modules[1].get("path", "1_Pooling") / "config.json", {})
        modes = [k for k, v in pool.items() if k.startswith("pooling_mode") and v]
        if modes == ["pooling_mode_mean_tokens"]:
            pooling = "mean"
        elif modes == ["pooling_mode_cls_token"]:
            pooling = "cls"
        else:
            raise Unsupported(f"{name}: pooling {modes}")
        tok_config = _json(path / "tokenizer_config.json", {})
        max_length = _json(path / "sentence_bert_config.json", {}).get("max_seq_length") \
            or tok_config.get("model_max_length") or 512
        pad = tok_config.get("pad_token") or "[PAD]"
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
        return cls(path, weights, pooling, int(max_length), str(pad))

    @property
    def key(self) -> str:
        """Names this version of the weights (path, size, mtime: cheap to compute on
        every start, unlike a checksum of 90 MB)."""
        st = self.weights.stat()
        raw = f"{self.weights.resolve()}:{st.st_size}:{st.st_mtime_ns}:{self.pooling}:{OPSET}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _json(path: Path, default: object) -> dict | list:
    if not path.is_file():
        return default  # type: ignore[return-value]
    return json.loads(path.read_text())


def onnx_file(name: str) -> Path:
    """Where the ONNX export of this version of the encoder lives (may not exist yet)."""
    model = SentenceModel.read(name)
    return cache_dir() / "onnx" / f"{Path(name).name}-{model.key}.onnx"


def export(name: str) -> Path:
    """Export the encoder to ONNX once (torch, a few seconds) -> the file. The graph
    takes input_ids and attention_mask (B, N) int64 and returns the pooled, not yet
    normalized sentence embedding (B, dim). Written to a temporary file and renamed, so
    a killed export leaves nothing half-written."""
    out = onnx_file(name)
    if out.is_file():
        return out
    import torch
    from transformers import AutoModel

    model = SentenceModel.read(name)
    bert = AutoModel.from_pretrained(str(model.path), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                    ) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids,
                               attention_mask=attention_mask).last_hidden_state
            if model.pooling == "cls":
                return hidden[:, 0]
            weight = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weight).sum(1) / weight.sum(1).clamp(min=1e-9)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    ids = torch.tensor([[101, 2054, 2003, 102], [101, 2054, 102, 0]])
    axes = {"input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"}, "pooled": {0: "batch"}}
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on the legacy path
        torch.onnx.export(Pooled(), (ids, (ids > 0).long()), str(tmp),
                          input_names=["input_ids", "attention_mask"],
                          output_names=["pooled"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)
    os.replace(tmp, out)
    return out


class OnnxTextEncoder:
    """``encode(texts) -> (N, dim)`` float32 unit norm, as TextEncoder, through ONNX
    Runtime. Raises :class:`Unsupported` for a model it does not take."""

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 64,
                 threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model = SentenceModel.read(name)
        self.name = name
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(model.path / "tokenizer.json"))
        pad_id = self.tokenizer.token_to_id(model.pad_token)
        self.tokenizer.enable_padding(pad_id=pad_id or 0, pad_token=model.pad_token)
        self.tokenizer.enable_truncation(max_length=model.max_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3  # no warnings about unused initializers
        self.session = ort.InferenceSession(str(export(name)), options,
                                            providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """texts: N strings -> (N, dim) float32, unit norm."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer.encode_batch(list(texts[i:i + self.batch_size]))
            feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
            pooled = self.session.run(None, feed)[0]
            out[i:i + len(enc)] = pooled / np.maximum(
                np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out
