"""``speechrag serve``: an HTTP API and a web page over one index.

FastAPI on uvicorn: the API documents itself (OpenAPI at ``/docs``), uploads and
server-sent events come with it, and llama-cpp-python's server already brings both in,
so nothing new is installed. The page (``web/``) is plain HTML and JavaScript served
from the package: no CDN, no build step, nothing fetched from the network.

Safe by default: it binds 127.0.0.1; any other host needs a token (clients send
``Authorization: Bearer TOKEN``, or ``?token=`` where a browser cannot set headers, as
an ``<audio>`` source). Uploads are bounded in bytes and seconds; audio is served by
segment id only, and no path from a request ever reaches the file system.

Models are shared by the request threads and used one request at a time (a lock each
for the retriever and the LLM): on a CPU, parallel encoding would only split the same
cores. The index is re-read at most a second late, so files that ``speechrag index``
adds from another process appear while the server runs.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from speechrag.audio import MAX_QUERY_S, SAMPLE_RATE, AudioError, load_query_audio, read_span
from speechrag.index import Hit, Index
from speechrag.lexical import HybridConfig

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a 2-minute question is far less in any format
MAX_K = 50
SEGMENT_ID = re.compile(r"^[0-9a-f]{16}:\d{1,10}$")  # what Index writes for audio segments


class ServeError(ValueError):
    """The server cannot start as asked (a non-local host without a token, ...)."""


@dataclass(frozen=True)
class ServeConfig:
    """How the server runs."""

    index: str
    host: str = "127.0.0.1"
    port: int = 8000
    llm: str | None = None  # None: no answers, search only; "default": the shipped LLM
    token: str | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_audio_s: float = MAX_QUERY_S
    refresh_s: float = 1.0

    def check(self) -> None:
        if self.host not in LOCAL_HOSTS and not self.token:
            raise ServeError(f"--host {self.host} makes the index reachable from other "
                             "machines: give --token SECRET (clients send "
                             "'Authorization: Bearer SECRET'), or keep the default 127.0.0.1")


def hit_json(hit: Hit) -> dict[str, Any]:
    return {"id": hit.id, "source": hit.source, "start": hit.start, "end": hit.end,
            "score": hit.score, "text": hit.text}


def wav_bytes(samples: np.ndarray) -> bytes:
    """16-bit PCM WAV at 16 kHz: every browser plays it."""
    buf = io.BytesIO()
    sf.write(buf, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class Service:
    """What the endpoints do, without HTTP: the index, its retriever, the LLM."""

    def __init__(self, config: ServeConfig) -> None:
        from speechrag.retrievers import from_spec

        self.config = config
        self.index = Index.open(config.index, refresh_s=config.refresh_s)
        self.retriever = from_spec(self.index.config.model)
        self.model_lock = threading.Lock()
        self.llm_lock = threading.Lock()
        self.asker: Any = None
        if config.llm is not None:
            from speechrag.llm import LLMConfig, load_llm

            self.llm = load_llm(None if config.llm == "default" else LLMConfig(model=config.llm))
        else:
            self.llm = None

    def summary(self) -> dict[str, Any]:
        out = self.index.summary()
        out.pop("index", None)  # the server's own folder is not the client's business
        out["llm"] = None if self.llm is None else self.llm.name
        return out

    def search_text(self, q: str, k: int, hybrid: float) -> dict[str, Any]:
        from speechrag.rag import check_question

        words = check_question(q)
        t0 = time.perf_counter()
        with self.model_lock:
            vectors = self.retriever.encode_text([words])
        hits = self.index.search(vectors, k, [words], HybridConfig(weight=hybrid))[0]
        return {"query": words, "hits": [hit_json(h) for h in hits],
                "timings": {"search_ms": (time.perf_counter() - t0) * 1000}}

    def search_audio(self, samples: np.ndarray, k: int, hybrid: float) -> dict[str, Any]:
        t0 = time.perf_counter()
        with self.model_lock:
            vectors, heard = self.retriever.encode_query_audio([samples])
        words = heard[0] or ""
        hits = self.index.search(vectors, k, [words], HybridConfig(weight=hybrid))[0]
        return {"query": words, "hits": [hit_json(h) for h in hits],
                "timings": {"search_ms": (time.perf_counter() - t0) * 1000}}

    def segment_audio(self, segment_id: str) -> bytes | None:
        if not SEGMENT_ID.match(segment_id):
            return None
        row = self.index.segment(segment_id)
        if row is None or row["start"] is None:
            return None
        return wav_bytes(read_span(row["source"], row["start"], row["end"]))

    def answer_events(self, q: str | None, samples: np.ndarray | None, k: int
                      ) -> Iterator[str]:
        """Server-sent events: ``hits`` (the moments, and ``passages``: for each passage
        [n] of the prompt the index of its best hit), ``token`` pieces of the answer as
        written, then ``citations`` (with timings) or ``error``."""
        from speechrag.rag import Asker

        with self.llm_lock:
            try:
                if self.asker is None:  # this server's index and models, shared
                    self.asker = Asker(self.index, self.llm, retriever=self.retriever)
                with self.model_lock:
                    stream = self.asker.stream(q, samples, k, source="the recorded question")
                found = stream.retrieved.hits
                at = {h.id: i for i, h in enumerate(found)}
                # the answer's [n] is the n-th passage of the prompt (overlapping hits are
                # one passage, under its best hit's id): the hit each [n] plays
                yield sse("hits", {"query": stream.query, "dropped": stream.prompt.dropped,
                                   "hits": [hit_json(h) for h in found],
                                   "passages": [at.get(h.id) for h in stream.prompt.hits]})
                for piece in stream:
                    yield sse("token", {"text": piece})
                answer = stream.answer
                assert answer is not None
                yield sse("citations", {
                    "answer": answer.text, "no_answer": answer.no_answer,
                    "citations": [{"n": c.n, "id": c.id, "source": c.source, "start": c.start,
                                   "end": c.end, "score": c.score} for c in answer.citations],
                    "timings": answer.timings})
            except (ValueError, AudioError) as err:
                yield sse("error", {"detail": str(err)})
            except Exception as err:  # noqa: BLE001 - an LLM failure ends the stream, said
                yield sse("error", {"detail": f"the answer failed: {err}"})


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def decode_upload(data: bytes, filename: str, config: ServeConfig) -> np.ndarray:
    """An uploaded recording -> (n,) float32 at 16 kHz, or an AudioError naming what is
    wrong with it. The bytes go to a temporary file whose name the server chooses (the
    client's name is only shown in messages)."""
    shown = Path(filename or "upload").name or "upload"
    if not data:
        raise AudioError(shown, "empty upload (0 bytes)")
    suffix = re.sub(r"[^.a-z0-9]", "", Path(shown).suffix.lower())[:8]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        try:
            samples = load_query_audio(f.name)
        except AudioError as err:
            raise AudioError(shown, err.reason) from None
    if len(samples) / SAMPLE_RATE > config.max_audio_s:
        raise AudioError(shown, f"longer than {config.max_audio_s:.0f} s")
    return samples


def create_app(config: ServeConfig, service: Service | None = None) -> FastAPI:
    """The ASGI app (FastAPI)."""
    config.check()
    svc = service or Service(config)
    app = FastAPI(title="speechrag", version="0.1.0",
                  description="Search recorded speech, ask it questions, play the moments.")

    def authorized(request: Request) -> None:
        if not config.token:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else \
            request.query_params.get("token", "")
        if not secrets.compare_digest(token.encode(), config.token.encode()):
            raise HTTPException(401, "missing or wrong token: send Authorization: Bearer TOKEN")

    async def upload(request: Request) -> tuple[np.ndarray, dict[str, str]]:
        """The ``audio`` file of a multipart form, bounded in bytes before it is read whole."""
        length = int(request.headers.get("content-length") or 0)
        if length > config.max_upload_bytes:
            raise HTTPException(413, f"upload of {length} bytes is over the limit of "
                                     f"{config.max_upload_bytes} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_upload_bytes:
                raise HTTPException(413, f"upload is over the limit of "
                                         f"{config.max_upload_bytes} bytes")
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartParser

        async def replay() -> Any:
            yield body
            yield b""

        try:
            form = await MultiPartParser(request.headers, replay(),
                                         max_part_size=config.max_upload_bytes).parse()
        except Exception as err:  # noqa: BLE001 - a malformed form is the client's error
            raise HTTPException(400, f"not a multipart form with an 'audio' file ({err})") \
                from None
        audio = form.get("audio")
        if not isinstance(audio, UploadFile):
            raise HTTPException(400, "the form has no 'audio' file")
        data = await audio.read()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        try:
            return decode_upload(data, audio.filename or "upload", config), fields
        except AudioError as err:
            raise HTTPException(400, str(err)) from None

    def k_of(value: Any) -> int:
        try:
            k = int(value)
        except (TypeError, ValueError):
            raise HTTPException(400, f"k must be a whole number, not {value!r}") from None
        if not 1 <= k <= MAX_K:
            raise HTTPException(400, f"k must be between 1 and {MAX_K}")
        return k

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, err: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(resources.files("speechrag.web").joinpath("index.html").read_text())

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        kinds = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in kinds:  # a fixed list: no name from the client is a path
            raise HTTPException(404, "no such file")
        text = resources.files("speechrag.web").joinpath(name).read_text()
        return Response(text, media_type=kinds[name])

    @app.get("/api/index", dependencies=[Depends(authorized)])
    def index_summary() -> dict[str, Any]:
        """What the index holds: model, files, hours of audio, segments, times; the LLM."""
        return svc.summary()

    @app.get("/api/search", dependencies=[Depends(authorized)])
    def search(q: str = Query(..., max_length=1000), k: int = 10,
               hybrid: float = Query(0.0, ge=0.0, le=10.0)) -> dict[str, Any]:
        """Top-k moments for a written question."""
        return svc.search_text(q, k_of(k), hybrid)

    @app.post("/api/search", dependencies=[Depends(authorized)])
    async def search_spoken(request: Request) -> dict[str, Any]:
        """Top-k moments for a recorded question: multipart form, ``audio`` file (any
        format ffmpeg reads, up to 2 minutes), optional ``k`` and ``hybrid`` fields."""
        samples, fields = await upload(request)
        k = k_of(fields.get("k", 10))
        return svc.search_audio(samples, k, float(fields.get("hybrid") or 0.0))

    @app.post("/api/ask", dependencies=[Depends(authorized)])
    async def ask(request: Request) -> StreamingResponse:
        """Answer a question from the moments, streamed as server-sent events: ``hits``,
        then ``token`` pieces, then ``citations`` (or ``error``). JSON ``{"q", "k"}`` or a
        multipart form with an ``audio`` file."""
        if svc.llm is None:
            raise HTTPException(409, "this server has no LLM: start it with --llm")
        kind = request.headers.get("content-type", "")
        samples, q = None, None
        if kind.startswith("multipart/"):
            samples, fields = await upload(request)
            k = k_of(fields.get("k", 5))
        else:
            try:
                body = json.loads(await request.body() or b"{}")
            except json.JSONDecodeError:
                raise HTTPException(400, 'send JSON {"q": "...", "k": 5}') from None
            if not isinstance(body, dict) or not isinstance(body.get("q"), str):
                raise HTTPException(400, 'send JSON {"q": "...", "k": 5}')
            q, k = body["q"], k_of(body.get("k", 5))
            from speechrag.rag import check_question

            check_question(q)
        return StreamingResponse(svc.answer_events(q, samples, k),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.get("/api/segments/{segment_id}/audio", dependencies=[Depends(authorized)],
             response_class=Response)
    def segment_audio(segment_id: str) -> Response:
        """The audio of exactly one hit, start to end, as WAV."""
        try:
            data = svc.segment_audio(segment_id)
        except AudioError as err:
            raise HTTPException(410, f"the recording of this segment cannot be read now "
                                     f"({err.reason})") from None
        if data is None:
            raise HTTPException(404, f"no audio segment {segment_id!r} in this index")
        return Response(data, media_type="audio/wav",
                        headers={"Cache-Control": "private, max-age=3600"})

    return app
