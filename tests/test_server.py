"""speechrag serve: the real server (``speechrag serve`` in its own process, uvicorn,
real models, a real LanceDB index of real TTS speech), spoken to over HTTP."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import speechrag
from speechrag.segment import SegmenterConfig
from speechrag.server import ServeConfig, ServeError
from tests.conftest import speak, write_wav


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(index: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``speechrag serve`` on a free port, its log beside the index (server.log)."""
    port = free_port()
    log = open(index.parent / f"server-{port}.log", "w")  # noqa: SIM115 - the server's
    proc = subprocess.Popen([sys.executable, "-m", "speechrag.cli", "serve", "--index",
                             str(index), "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {Path(log.name).read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/docs", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start in 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def post(url: str, body: bytes, content_type: str,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def multipart(data: bytes, filename: str = "q.wav", **fields: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
             .encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def served_index(tmp_path_factory, speech_dir: Path) -> Path:
    ix = tmp_path_factory.mktemp("serve") / "ix"
    speechrag.index_audio([speech_dir], ix, model="cascade-tiny",
                          segmenter=SegmenterConfig.of(10, 5))
    return ix


@pytest.fixture(scope="module")
def server(served_index: Path) -> Iterator[str]:
    proc, url = start(served_index, "--llm", "smollm2-135m")
    yield url
    stop(proc)


def search(url: str, q: str, k: int = 3) -> dict:
    status, body, _ = get(f"{url}/api/search?q={urllib.request.quote(q)}&k={k}")
    assert status == 200, body
    return json.loads(body)


def test_index_summary(server: str) -> None:
    status, body, _ = get(server + "/api/index")
    s = json.loads(body)
    assert status == 200 and s["files"] == 3 and s["segments"] >= 3
    assert s["model"]["kind"] == "cascade" and s["llm"] == "smollm2-135m"
    assert 0 < s["audio_hours"] < 0.01 and "index" not in s  # no server path given out


def test_search_returns_the_moments(server: str) -> None:
    out = search(server, "Which instrument has four strings?")
    assert out["query"] == "Which instrument has four strings?" and len(out["hits"]) == 3
    top = out["hits"][0]
    assert set(top) == {"id", "source", "start", "end", "score", "text"}
    assert Path(top["source"]).stem == "violin" and 0 <= top["start"] < top["end"]


def test_a_hits_audio_is_exactly_that_moment(server: str) -> None:
    for hit in search(server, "bread baked in an oven", k=3)["hits"]:
        status, data, headers = get(f"{server}/api/segments/{hit['id']}/audio")
        assert status == 200 and headers["content-type"] == "audio/wav"
        samples, rate = sf.read(io.BytesIO(data))
        expected = min(hit["end"], sf.info(hit["source"]).duration) - hit["start"]
        assert rate == 16000 and abs(len(samples) / rate - expected) < 0.01


def test_a_spoken_question_searches_like_a_written_one(server: str, tmp_path: Path) -> None:
    wav = speak("Which instrument has four strings?", tmp_path / "q.wav", "flite:slt")
    body, kind = multipart(wav.read_bytes(), "question.wav", k="2")
    status, data = post(server + "/api/search", body, kind)
    out = json.loads(data)
    assert status == 200 and len(out["hits"]) == 2, out
    assert "strings" in out["query"].lower()
    assert Path(out["hits"][0]["source"]).stem == "violin"


def test_ask_streams_hits_tokens_then_citations(server: str) -> None:
    status, data = post(server + "/api/ask", json.dumps({"q": "What is bread made from?",
                                                         "k": 2}).encode(), "application/json")
    assert status == 200
    events = [(b.split("\n")[0].removeprefix("event: "),
               json.loads(b.split("\n")[1].removeprefix("data: ")))
              for b in data.decode().strip().split("\n\n")]
    kinds = [e for e, _ in events]
    assert kinds[0] == "hits" and kinds[-1] == "citations" and "token" in kinds
    assert len(events[0][1]["hits"]) == 2
    found, passages = events[0][1]["hits"], events[0][1]["passages"]
    assert 1 <= len(passages) <= 2 and all(0 <= i < len(found) for i in passages)
    final = events[-1][1]
    for c in final["citations"]:  # [n] plays the n-th passage's best hit
        assert found[passages[c["n"] - 1]]["id"] == c["id"]
    assert final["answer"] == "".join(d["text"] for e, d in events if e == "token").strip()
    assert final["timings"]["first_token_ms"] > 0


def test_ask_a_recorded_question(server: str, tmp_path: Path) -> None:
    wav = speak("Which instrument has four strings?", tmp_path / "q.wav", "flite:slt")
    status, data = post(server + "/api/ask", *multipart(wav.read_bytes(), "q.wav", k="1"))
    assert status == 200
    blocks = data.decode().strip().split("\n\n")
    first = json.loads(blocks[0].split("\n")[1].removeprefix("data: "))
    assert "strings" in first["query"].lower()  # what was heard is the question
    assert Path(first["hits"][0]["source"]).stem == "violin"
    assert blocks[-1].startswith("event: citations")


def test_bad_requests_are_4xx_with_a_message_never_500(server: str, tmp_path: Path) -> None:
    cases = []
    cases.append(get(f"{server}/api/segments/0123456789abcdef:999/audio")[:2])
    for bad in ("..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "e:1", "x" * 300):
        cases.append(get(f"{server}/api/segments/{bad}/audio")[:2])
    cases.append(get(f"{server}/static/..%2F..%2Fpyproject.toml")[:2])
    for status, body in cases:
        assert status == 404 and b"root:" not in body and b"[project]" not in body
    assert get(f"{server}/api/search?q=violin&k=0")[0] == 400
    assert get(f"{server}/api/search?q=violin&k=abc")[0] in (400, 422)
    assert get(f"{server}/api/search?q=%20%20")[0] == 400
    assert post(server + "/api/ask", b"not json", "application/json")[0] == 400
    assert post(server + "/api/ask", json.dumps({"q": ""}).encode(), "application/json")[0] \
        == 400
    junk = multipart(b"this is not audio at all", "junk.mp3")
    status, data = post(server + "/api/search", *junk)
    assert status == 400 and b"junk.mp3" in data
    status, data = post(server + "/api/search", *multipart(b"", "empty.wav"))
    assert status == 400 and b"empty" in data
    long_wav = write_wav(tmp_path / "long.wav", np.zeros(16000 * 150, dtype=np.float32))
    status, data = post(server + "/api/search", *multipart(long_wav.read_bytes(), "long.wav"))
    assert status == 400 and b"too long" in data
    status, data = post(server + "/api/search", b"--x--\r\n",
                        "multipart/form-data; boundary=x")
    assert status == 400 and b"audio" in data


def test_an_oversized_upload_is_refused_before_it_is_read(served_index: Path) -> None:
    proc, url = start(served_index)
    try:
        body, kind = multipart(os.urandom(11 * 1024 * 1024), "big.wav")
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=60)
        conn.putrequest("POST", "/api/search")
        conn.putheader("Content-Type", kind)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:65536])  # the answer comes before the rest is sent
        response = conn.getresponse()
        assert response.status == 413 and b"limit" in response.read()
        conn.close()
        # no LLM: asking is refused with a reason, searching still works
        status, data = post(url + "/api/ask", b'{"q": "x"}', "application/json")
        assert status == 409 and b"--llm" in data
        assert search(url, "volcano")["hits"]
    finally:
        stop(proc)


def test_other_hosts_need_a_token_and_the_token_is_checked(served_index: Path) -> None:
    with pytest.raises(ServeError, match="--token"):
        ServeConfig(index=str(served_index), host="0.0.0.0").check()
    result = subprocess.run([sys.executable, "-m", "speechrag.cli", "serve", "--index",
                             str(served_index), "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "SPEECHRAG_TOKEN"})
    assert result.returncode == 2 and "--token" in result.stderr
    proc, url = start(served_index, "--token", "s3cret")
    try:
        assert get(url + "/api/index")[0] == 401
        assert get(url + "/api/index", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(url + "/api/index", {"Authorization": "Bearer s3cret"})[0] == 200
        hit = json.loads(get(f"{url}/api/search?q=violin&k=1",
                             {"Authorization": "Bearer s3cret"})[1])["hits"][0]
        assert get(f"{url}/api/segments/{hit['id']}/audio?token=s3cret")[0] == 200
        assert get(f"{url}/api/segments/{hit['id']}/audio")[0] == 401
    finally:
        stop(proc)


def test_queries_are_answered_while_another_process_indexes(tmp_path: Path,
                                                          speech_dir: Path) -> None:
    ix = tmp_path / "ix"
    speechrag.index_audio([speech_dir / "volcano.wav"], ix, model="cascade-tiny",
                          segmenter=SegmenterConfig.of(10, 5))
    more = tmp_path / "more"
    more.mkdir()
    for i in range(3):
        for name in ("violin", "bread"):
            shutil.copy(speech_dir / f"{name}.wav", more / f"{i}-{name}.wav")
    proc, url = start(ix)
    errors: list[str] = []
    answered = [0]
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            status, body, _ = get(f"{url}/api/search?q=violin%20strings&k=3")
            if status != 200:
                errors.append(body.decode()[:200])
            answered[0] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        result = subprocess.run([sys.executable, "-m", "speechrag.cli", "index", str(more),
                                 "--index", str(ix)], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        time.sleep(2)  # the server re-reads the index at most a second late
        done.set()
        for t in threads:
            t.join()
        assert not errors, (errors[:3], (ix.parent / f"server-{url.rsplit(':', 1)[1]}.log")
                            .read_text()[-3000:])
        assert answered[0] > 10
        summary = json.loads(get(url + "/api/index")[1])
        assert summary["files"] == 7
        assert Path(search(url, "four strings")["hits"][0]["source"]).parent == more
    finally:
        done.set()
        stop(proc)
