"""The LLM side: local GGUF models through llama.cpp, and ``--llm URL`` against a real
OpenAI-compatible server (llama-cpp-python's own, started on 127.0.0.1 by the test)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread

import pytest

from speechrag.assets import ASSETS, resolve
from speechrag.llm import LOCAL_LLMS, LLMConfig, LLMError, OpenAIChatLLM, load_llm

SMALL = "smollm2-135m"
QUESTION = [{"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "What color is the sky on a clear day?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2, on a free local port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", resolve(SMALL),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=1).read()
                break
            except OSError as err:
                if proc.poll() is not None:
                    log = proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                    raise RuntimeError(log) from err
                time.sleep(0.5)
        else:
            raise RuntimeError("the llama.cpp server did not start in 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_named_llm_is_a_shipped_asset() -> None:
    for name in LOCAL_LLMS:
        assert ASSETS[name].kind == "llm" and ASSETS[name].packages


def test_local_llm_streams_a_greedy_answer_the_same_twice() -> None:
    llm = load_llm(LLMConfig(model=SMALL))
    pieces = list(llm.stream(QUESTION, 12))
    assert len(pieces) > 1 and "".join(pieces).strip()
    assert "".join(llm.stream(QUESTION, 12)) == "".join(pieces)  # temperature 0
    assert load_llm(LLMConfig(model=SMALL)) is llm  # loaded once per process
    assert 20 < llm.count_tokens(QUESTION) < 80


def test_max_tokens_bounds_the_answer() -> None:
    llm = load_llm(LLMConfig(model=SMALL))
    long = [{"role": "user", "content": "Write a long story about a cat."}]
    assert len(list(llm.stream(long, 5))) <= 5


def test_openai_compatible_server_streams_and_the_url_forms_agree(server: str) -> None:
    for url in (server, server + "/v1", server + "/v1/"):
        llm = load_llm(url)
        assert isinstance(llm, OpenAIChatLLM)
        assert llm.url == server + "/v1/chat/completions"
    pieces = list(load_llm(server).stream(QUESTION, 12))
    assert len(pieces) > 1 and "".join(pieces).strip()
    # the same model and prompt through the server and in process: the same greedy answer
    local = "".join(load_llm(LLMConfig(model=SMALL)).stream(QUESTION, 12))
    assert "".join(pieces).strip() == local.strip()


def test_server_errors_are_named(server: str) -> None:
    with pytest.raises(LLMError, match="answered HTTP 404"):
        list(load_llm(server + "/nothing/here").stream(QUESTION, 4))
    port = free_port()  # nothing listens there
    with pytest.raises(LLMError, match=f"cannot reach the LLM server at http://127.0.0.1:{port}"):
        list(load_llm(f"http://127.0.0.1:{port}").stream(QUESTION, 4))


class _Broken(BaseHTTPRequestHandler):
    """A server that starts an event stream, then sends an error event."""

    def do_POST(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b'data: {"choices": [{"delta": {"content": "Bl"}}]}\n\n')
        self.wfile.write(b'data: {"error": {"message": "out of memory"}}\n\n')

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_failing_mid_answer_is_an_error_naming_it() -> None:
    httpd = HTTPServer(("127.0.0.1", 0), _Broken)
    Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with pytest.raises(LLMError, match="out of memory"):
            list(load_llm(url).stream(QUESTION, 4))
    finally:
        httpd.shutdown()


def test_server_key_is_sent_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": "bad key"}')

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Echo)
    Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    try:
        with pytest.raises(LLMError, match="HTTP 401: .*bad key"):
            list(load_llm(f"http://127.0.0.1:{httpd.server_address[1]}").stream(QUESTION, 4))
    finally:
        httpd.shutdown()
    assert seen == ["Bearer sk-test"]


def test_a_gguf_path_loads_like_a_name(tmp_path: Path) -> None:
    llm = load_llm(LLMConfig(model=resolve(SMALL)))
    assert llm.name.endswith(".gguf") and "".join(llm.stream(QUESTION, 4)).strip()
