"""A packaged GGUF LLM in PyTorch, frozen: what the SpeechLLM trains its projector through.

``speechrag ask`` runs the LLMs through llama.cpp (fast, quantized, no gradients). A
projector needs gradients through the LLM, so here transformers loads the same GGUF
dequantized into PyTorch (``gguf`` and ``accelerate`` installed). Dequantizing takes tens
of seconds (the 0.5B model: ~45 s on 2 cores), so the first load saves the result as
safetensors under ``<cache>/models/<name>-torch/`` and later loads read that (~2 s).

The LLM never trains: every parameter has ``requires_grad=False`` and the model stays in
eval mode; gradients still flow through it to its inputs.

Shapes: B batch, T tokens, E the LLM's width, V its vocabulary.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechrag.assets import AssetError, cache_dir, file_sha256, resolve

_LOCK = threading.Lock()


class FrozenLLM(nn.Module):
    """A causal LM and its tokenizer; chat prompts with speech spliced in as embeddings."""

    def __init__(self, name: str, model: Any, tokenizer: Any, digest: str = "") -> None:
        super().__init__()
        self.name = name
        self.digest = digest  # sha256 of the GGUF file it was read from
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.n_layers: int = model.config.num_hidden_layers
        self.width: int = model.config.hidden_size
        eos = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in \
            tokenizer.get_vocab() else tokenizer.eos_token_id
        self.end_id: int = int(eos)

    def train(self, mode: bool = True) -> FrozenLLM:  # the LLM stays in eval mode
        return self

    @property
    def embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def embedding_rms(self) -> float:
        """Root mean square of the token embedding table's entries: the scale projected
        speech starts at."""
        return float(self.embeddings.weight.pow(2).mean().sqrt())

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def embed(self, ids: list[int] | torch.Tensor) -> torch.Tensor:
        """ids (T,) or (B, T) -> embeddings (T, E) or (B, T, E)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        return self.embeddings(ids)

    def chat_text(self, system: str | None, user: str, answer: str | None = None) -> str:
        """The prompt through the model's own chat template, up to the assistant's turn
        (and, with ``answer``, the answer and its end token)."""
        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": user}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        return text if answer is None else text + answer

    def hidden(self, embeds: torch.Tensor, mask: torch.Tensor, layers: tuple[int, ...]
               ) -> list[torch.Tensor]:
        """embeds (B, T, E), mask (B, T) -> the hidden states (B, T, E) at each of
        ``layers``: 0 is the input embeddings, i the raw output of block i (before the
        final norm, also for the last block). Only as many blocks run as the deepest
        layer needs. Read through forward hooks: transformers' ``hidden_states`` puts
        the final norm on whichever block ran last."""
        deepest = max(layers)
        if min(layers) < 0 or deepest > self.n_layers:
            raise ValueError(f"layers {layers}: {self.name} has {self.n_layers} blocks")
        if deepest == 0:
            return [embeds for _ in layers]
        base = self.model.model
        keep = base.layers
        got: dict[int, torch.Tensor] = {0: embeds}

        def hook(i: int):  # type: ignore[no-untyped-def]
            def save(_module, _args, output):  # type: ignore[no-untyped-def]
                got[i] = output[0] if isinstance(output, tuple) else output
            return save

        handles = [keep[i - 1].register_forward_hook(hook(i)) for i in set(layers) if i > 0]
        try:
            base.layers = keep[:deepest]  # the blocks above the deepest layer are not run
            base(inputs_embeds=embeds, attention_mask=mask.long(), use_cache=False)
        finally:
            base.layers = keep
            for h in handles:
                h.remove()
        return [got[i] for i in layers]

    def final_hidden(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """embeds (B, T, E), mask (B, T) -> the last block's states after the final norm
        (B, T, E): what the vocabulary projection reads."""
        return self.model.model(inputs_embeds=embeds, attention_mask=mask.long(),
                                use_cache=False).last_hidden_state

    def logits(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """embeds (B, T, E), mask (B, T) -> next-token logits (B, T, V)."""
        return self.model(inputs_embeds=embeds, attention_mask=mask.long(),
                          use_cache=False).logits

    @torch.inference_mode()
    def stream(self, embeds: torch.Tensor, max_tokens: int) -> Iterator[str]:
        """One prompt (1, T, E) -> the greedy answer as text pieces, as they are decoded
        (a piece may wait for the next token when a character spans two)."""
        out = self.model(inputs_embeds=embeds, use_cache=True)
        past, said, ids = out.past_key_values, "", []
        for _ in range(max_tokens):
            token = int(out.logits[0, -1].argmax())
            if token == self.end_id or token == self.tokenizer.eos_token_id:
                break
            ids.append(token)
            text = self.decode(ids)
            if not text.endswith("\ufffd") and len(text) > len(said):
                yield text[len(said):]
                said = text
            out = self.model(input_ids=torch.tensor([[token]], device=embeds.device),
                             cache=past, use_cache=True)
            past = out.past_key_values
        if len(self.decode(ids)) > len(said):
            yield self.decode(ids)[len(said):]

    @torch.inference_mode()
    def greedy(self, embeds: torch.Tensor, max_tokens: int) -> list[int]:
        """One prompt (1, T, E) -> the greedy continuation's ids, up to the end token."""
        out = self.model.generate(inputs_embeds=embeds,
                                  attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                                  max_new_tokens=max_tokens, do_sample=False,
                                  eos_token_id=self.end_id, pad_token_id=self.end_id)
        ids = out[0].tolist()
        return ids[: ids.index(self.end_id)] if self.end_id in ids else ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


@lru_cache(maxsize=2)
def load_frozen_llm(name: str) -> FrozenLLM:
    """A packaged LLM (``speechrag.llm.LOCAL_LLMS``) or a .gguf path, in PyTorch, fp32."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:  # pragma: no cover - a dependency
        raise AssetError("the SpeechLLM needs transformers") from err
    gguf = Path(name) if name.endswith(".gguf") else Path(resolve(name))
    if not gguf.is_file():
        raise AssetError(f"LLM {name!r}: no GGUF file at {gguf}")
    marker = gguf.parent / ".sha256-ok"  # a joined, verified asset records its checksum
    digest = marker.read_text().strip() if marker.is_file() else file_sha256(gguf)
    saved = cache_dir() / "models" / f"{gguf.stem}-{digest[:12]}-torch"
    with _LOCK:
        if not (saved / ".complete").exists():
            try:
                import accelerate  # noqa: F401  transformers needs it to read a GGUF
                import gguf as _  # noqa: F401
            except ImportError as err:
                raise AssetError("reading a GGUF into PyTorch needs the gguf and accelerate "
                                 "packages: run `make install`") from err
            from transformers.utils import logging as hf_logging

            quiet = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            try:
                tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                             dtype=torch.float32)
            finally:
                hf_logging.set_verbosity(quiet)
                hf_logging.enable_progress_bar()
            tmp = saved.with_name(saved.name + ".tmp")
            # dequantized, it is a plain fp32 model: saved as one, not as "GGUF-quantized"
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / ".complete").write_text("ok\n")
            if saved.exists():
                import shutil

                shutil.rmtree(saved)
            tmp.replace(saved)
        tok = AutoTokenizer.from_pretrained(saved)
        model = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
    return FrozenLLM(name, model, tok, digest)
