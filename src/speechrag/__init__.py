"""speechrag: index recorded speech and find the moments that answer a question.

Quickstart::

    import speechrag
    speechrag.index_audio(["talks/"], "my-index")            # cascade model by default
    for hit in speechrag.search("my-index", "who invented the telephone?", k=3):
        print(hit.source, hit.start, hit.end, hit.score, hit.text)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from speechrag.index import Hit, Index, IndexReport
    from speechrag.llm import LLM, LLMConfig
    from speechrag.rag import Answer, AnswerStream
    from speechrag.retrievers import Retriever
    from speechrag.segment import SegmenterConfig

__all__ = ["ask", "ask_stream", "index_audio", "index_texts", "load_retriever", "open_index",
           "read_documents", "search", "search_audio"]
__version__ = "0.1.0"


def load_retriever(model: str = "cascade") -> Retriever:
    """A retriever by preset name (``cascade``, ``cascade-beam5``, ``cascade-tiny``,
    ``clsr+seal``), shipped model (``clsr``, ``seal``), model JSON or checkpoint path."""
    from speechrag.retrievers import load_retriever as _load

    return _load(model)


def open_index(index_dir: str | Path, model: str | None = None,
               segmenter: SegmenterConfig | None = None) -> tuple[Index, Retriever]:
    """Open (or create) an index and the retriever that fills it.

    With ``model=None`` / ``segmenter=None`` an existing index keeps its own model and
    cut, and a new one gets the cascade and 40 s windows with a 20 s hop; naming another
    model or cut than the index's is an error, never a silent mix.
    """
    from speechrag.index import CONFIG_FILE, Index
    from speechrag.retrievers import DEFAULT_MODEL, from_spec, resolve_spec
    from speechrag.segment import SegmenterConfig

    index_dir = Path(index_dir)
    if (index_dir / CONFIG_FILE).exists():
        existing = Index.open(index_dir)
        if model is not None:
            existing.check_model(resolve_spec(model))
        retriever = from_spec(existing.config.model)
        segmenter = segmenter or SegmenterConfig(**existing.config.segmenter)
    else:
        retriever = load_retriever(model or DEFAULT_MODEL)
    return Index.create(index_dir, retriever, segmenter or SegmenterConfig()), retriever


def index_audio(paths: list[str | Path], index_dir: str | Path, model: str | None = None,
                segmenter: SegmenterConfig | None = None) -> IndexReport:
    """Index audio files and folders (recursively); resumable, duplicate-free."""
    from speechrag.index import collect_audio_files

    index, retriever = open_index(index_dir, model, segmenter)
    files, missing = collect_audio_files(paths)
    report = index.add_files(files, retriever)
    report.failed[:0] = missing
    return report


def read_documents(path: str | Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A documents JSONL file (one ``{"id": ..., "text": ...}`` per line) -> (documents,
    problems): a bad line (malformed, or an id already used above it) is reported as
    ``("FILE:LINE", reason)`` and skipped, never fatal to the rest. Blank lines are
    ignored; ids are kept as strings."""
    from speechrag.jsonl import BadLine, read_jsonl

    docs: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for n, d in read_jsonl(path, "documents file"):
        if isinstance(d, BadLine):
            problems.append((d.where, d.reason))
            continue
        if (not isinstance(d, dict) or d.get("id") in (None, "")
                or not isinstance(d.get("text"), str) or not d["text"].strip()):
            problems.append((f"{path}:{n}", 'expected {"id": ..., "text": "..."} with a '
                             "non-empty id and text"))
            continue
        doc_id = str(d["id"])
        if doc_id in first_line:  # the first one stays; a repeat would replace it silently
            problems.append((f"{path}:{n}", f"id {doc_id!r} already used on line "
                             f"{first_line[doc_id]}"))
            continue
        first_line[doc_id] = n
        docs.append((doc_id, d["text"]))
    return docs, problems


def index_texts(docs: list[tuple[str, str]], index_dir: str | Path,
                model: str | None = None) -> IndexReport:
    """Index text documents ``(id, text)`` so spoken or written queries can find them.
    A hit on a document has ``source`` = its id and no start or end."""
    index, retriever = open_index(index_dir, model)
    return index.add_texts(docs, retriever)


def search_audio(index_dir: str | Path, query_audio: str | Path, k: int = 10) -> list[Hit]:
    """Top-k hits for a spoken question (an audio file), best first: the index's own
    model encodes it (the cascade transcribes it first; CLSR and SEAL go straight from
    speech). An unreadable file is an :class:`~speechrag.audio.AudioError` naming it."""
    from speechrag.audio import load_query_audio
    from speechrag.index import Index
    from speechrag.retrievers import from_spec

    samples = load_query_audio(query_audio)
    index = Index.open(index_dir)
    retriever = from_spec(index.config.model)
    vectors, _ = retriever.encode_query_audio([samples])
    return index.search(vectors, k)[0]


def search(index_dir: str | Path, question: str, k: int = 10, hybrid: float = 0.0,
           exact: bool = False) -> list[Hit]:
    """Top-k segments for a text question, best first, by cosine (through the index's
    vector index once it is large, exact with ``exact``). ``hybrid`` > 0 re-ranks the best
    100 by cosine + hybrid x the match of the question's words to each segment's
    transcript (speechrag.lexical; 0.3 was chosen on validation)."""
    from speechrag.index import Index
    from speechrag.lexical import HybridConfig
    from speechrag.retrievers.text_side import text_side

    if not question.strip():
        raise ValueError("the question is empty: give its words")
    index = Index.open(index_dir)
    retriever = text_side(index.config.model)  # no speech side needed: loads in ~1 s
    return index.search(retriever.encode_text([question]), k, [question],
                        HybridConfig(weight=hybrid), exact=exact)[0]


def ask_stream(index_dir: str | Path, question: str | None = None, k: int = 5,
               llm: LLM | LLMConfig | str | None = None, audio: str | Path | None = None,
               context: str = "stored", context_tokens: int | None = None,
               speech_llm: str | Path | bool | None = None) -> AnswerStream:
    """Answer a question from an index with an LLM, streamed: iterate the returned
    stream for the answer's pieces as they are written; its ``answer`` is then the
    whole :class:`~speechrag.rag.Answer`. Give ``question`` (text) or ``audio`` (a
    spoken question's file). ``llm``: a local model name, a ``.gguf`` path, an
    OpenAI-compatible server URL, or None for the default local model.
    ``context_tokens``: the most tokens of hit text the LLM reads (None: the default,
    ``speechrag.rag.CONTEXT_TOKENS``; 0: every word of every hit). ``context``:
    ``stored``, ``asr`` or ``speech`` (the SpeechLLM hears the hits' audio);
    ``speech_llm``: the SpeechLLM answers and hears a spoken question as speech (True:
    the shipped projector; or a checkpoint's path)."""
    from speechrag.audio import load_query_audio
    from speechrag.rag import Asker

    samples = load_query_audio(audio) if audio is not None else None
    asker = Asker(index_dir, llm, context=context, context_tokens=context_tokens,
                  speech_llm=speech_llm)
    return asker.stream(question, samples, k, source=str(audio))


def ask(index_dir: str | Path, question: str | None = None, k: int = 5,
        llm: LLM | LLMConfig | str | None = None, audio: str | Path | None = None,
        context: str = "stored", context_tokens: int | None = None,
        speech_llm: str | Path | bool | None = None) -> Answer:
    """Answer a question from an index with an LLM: ``Answer(text, citations, hits,
    timings, ...)``; each citation is a hit the answer cites as [n] (hits of one
    recording that overlap are cited as one span), with its source and start/end in
    seconds. See :func:`ask_stream` for the arguments."""
    return ask_stream(index_dir, question, k, llm, audio, context, context_tokens,
                      speech_llm).text()
