"""The language model that writes answers: a local GGUF model through llama.cpp, or
any OpenAI-compatible ``/v1/chat/completions`` server.

Local models run through ``llama-cpp-python`` (built from source at install: PyPI has
no binary wheel; about 5.5 minutes on 2 cores). It was picked over the prebuilt
``ik-llama-cpp-python`` wheel (8 s to install, the same speed here) because it streams
tokens, applies the chat template stored in the GGUF file itself (the model's own, not
one written here) and ships an OpenAI-compatible server (``python -m llama_cpp.server``)
that the tests run ``--llm URL`` against. The server client is the standard library's:
one streamed POST needs no HTTP package.
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

DEFAULT_LLM = "qwen2.5-coder-1.5b"
LOCAL_LLMS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m")
Messages = list[dict[str, str]]


class LLMError(RuntimeError):
    """The LLM could not be loaded or reached, or failed while answering; the message
    names which one and what went wrong."""


@dataclass(frozen=True)
class LLMConfig:
    """Which LLM and how it runs. ``model`` is a named local model (``LOCAL_LLMS``), a
    ``.gguf`` file, or the URL of an OpenAI-compatible server (``http://host:port`` or its
    ``/v1``); ``n_ctx`` is the prompt + answer budget in tokens (a server's own limit may
    be larger: this is what the prompt is fitted to)."""

    model: str = DEFAULT_LLM
    n_ctx: int = 4096
    max_tokens: int = 96
    temperature: float = 0.0  # greedy: the same question gives the same answer
    threads: int = 0  # 0 = all cores
    api_model: str = "default"  # the "model" field sent to a server
    api_key_env: str = "OPENAI_API_KEY"  # a server's key, read from this variable if set
    timeout_s: float = 120.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def is_url(self) -> bool:
        return self.model.startswith(("http://", "https://"))


class LLM(Protocol):
    """What the answerer needs of a language model."""

    name: str
    n_ctx: int

    def count_tokens(self, messages: Messages) -> int:
        """Tokens of the prompt these chat messages make (template included)."""

    def count_text(self, text: str) -> int:
        """Tokens of a piece of text inside a message."""

    def stream(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        """The answer's text, piece by piece as it is generated."""


_LOADED: weakref.WeakSet[LocalLLM] = weakref.WeakSet()


class LocalLLM:
    """A GGUF model in this process, through llama.cpp on the CPU."""

    def __init__(self, config: LLMConfig) -> None:
        from speechrag.assets import resolve

        path = resolve(config.model) if not config.model.endswith(".gguf") else config.model
        if not Path(path).is_file():
            raise LLMError(f"LLM {config.model!r}: no model file at {path}")
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as err:
            raise LLMError("local LLMs need llama-cpp-python: run `make install`") from err
        threads = config.threads or os.cpu_count() or 1
        try:
            self.llm = Llama(path, n_ctx=config.n_ctx, n_threads=threads, verbose=False)
        except (ValueError, RuntimeError) as err:  # llama.cpp rejects a damaged file
            raise LLMError(f"LLM {config.model!r}: cannot load {path} ({err})") from None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise LLMError(f"LLM {config.model!r}: {path} carries no chat template; "
                           "use an instruction-tuned model")
        vocab = self.llm._model  # the template needs the model's own BOS/EOS text
        self._format = Jinja2ChatFormatter(
            template, eos_token=vocab.token_get_text(self.llm.token_eos()),
            bos_token=vocab.token_get_text(self.llm.token_bos()))
        self.config = config
        self.name = Path(path).name if config.model.endswith(".gguf") else config.model
        self.n_ctx = config.n_ctx
        _LOADED.add(self)

    def prompt(self, messages: Messages) -> str:
        """The text the model reads: the messages through the GGUF's chat template."""
        return self._format(messages=messages).prompt

    def count_tokens(self, messages: Messages) -> int:
        return len(self.llm.tokenize(self.prompt(messages).encode("utf-8"), add_bos=False,
                                     special=True))

    def count_text(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        chunks = self.llm.create_chat_completion(
            messages, max_tokens=max_tokens, temperature=self.config.temperature,
            stream=True)
        for chunk in chunks:
            piece = chunk["choices"][0]["delta"].get("content")  # type: ignore[index]
            if piece:
                yield piece


class OpenAIChatLLM:
    """An OpenAI-compatible server: ``POST {base}/v1/chat/completions`` with
    ``stream: true``, read as server-sent events. Token counts for fitting the prompt
    are estimated (3 characters a token, which over-counts English: a prompt that fits
    by this count fits)."""

    CHARS_PER_TOKEN = 3.0

    def __init__(self, config: LLMConfig) -> None:
        base = config.model.rstrip("/")
        self.url = (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"
        self.config = config
        self.name = config.model
        self.n_ctx = config.n_ctx

    def count_tokens(self, messages: Messages) -> int:
        chars = sum(len(m["content"]) + len(m["role"]) + 8 for m in messages)
        return int(chars / self.CHARS_PER_TOKEN) + 1

    def count_text(self, text: str) -> int:
        return math.ceil(len(text) / self.CHARS_PER_TOKEN)

    def stream(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        body = json.dumps({"model": self.config.api_model, "messages": messages,
                           "max_tokens": max_tokens, "temperature": self.config.temperature,
                           "stream": True}).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            response = urllib.request.urlopen(request, timeout=self.config.timeout_s)
        except urllib.error.HTTPError as err:
            detail = err.read(300).decode("utf-8", "replace").strip()
            raise LLMError(f"LLM server {self.url} answered HTTP {err.code}"
                           + (f": {detail}" if detail else "")) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise LLMError(f"cannot reach the LLM server at {self.url} ({reason})") from None
        with response:
            try:
                yield from self._events(response)
            except (OSError, TimeoutError) as err:
                raise LLMError(f"LLM server {self.url} broke off the answer ({err})") from None

    def _events(self, response) -> Iterator[str]:  # type: ignore[no-untyped-def]
        """Server-sent events: ``data: {json}`` lines, ending with ``data: [DONE]``."""
        for raw in response:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                raise LLMError(f"LLM server {self.url} sent a malformed event: "
                               f"{data[:120]!r}") from None
            if "error" in event:
                raise LLMError(f"LLM server {self.url} failed: {event['error']}")
            choices = event.get("choices") or [{}]
            piece = (choices[0].get("delta") or {}).get("content")
            if piece:
                yield piece


def load_llm(config: LLMConfig | str | None = None) -> LLM:
    """An LLM from a config, or a model name, GGUF path or server URL."""
    if config is None:
        config = LLMConfig()
    elif isinstance(config, str):
        config = LLMConfig(model=config)
    if config.is_url:
        return OpenAIChatLLM(config)
    from speechrag.assets import ASSETS

    if config.model not in ASSETS and not config.model.endswith(".gguf"):
        raise LLMError(f"unknown LLM {config.model!r}: one of {', '.join(LOCAL_LLMS)}, a "
                       ".gguf file, or the http(s) URL of an OpenAI-compatible server")
    if config.model in ASSETS and ASSETS[config.model].kind != "llm":
        raise LLMError(f"{config.model!r} is not a language model; one of "
                       f"{', '.join(LOCAL_LLMS)}")
    return _local(config)


@functools.lru_cache(maxsize=2)
def _local(config: LLMConfig) -> LocalLLM:
    """Local models stay loaded: asking again in one process costs no reload."""
    return LocalLLM(config)


@atexit.register
def _close_local() -> None:
    """Free llama.cpp models before the interpreter tears down the library they need
    (left to garbage collection at exit, llama-cpp-python prints a traceback)."""
    for local in list(_LOADED):
        local.llm.close()
    _local.cache_clear()
