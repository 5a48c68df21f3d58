"""Answers from an index (retrieval-augmented generation): retrieve the moments that
answer a question with the index's own model, give their text to an LLM, stream its
answer, and say which moments it cites.

    question (text, or speech -> its words) -> index search -> top-k hits
      -> prompt: the hits numbered [n] with source and mm:ss span, fitted to the LLM's
         context -> LLM answer streamed -> [n] parsed -> citations

The text each hit gives the LLM (``context``): ``stored`` is what the index holds with the
segment (the cascade's Whisper transcript, CLSR's rough transcript, a document's text);
``asr`` transcribes the top-k windows with Whisper at ask time and stores the transcript
back in the index (its ``transcripts`` table), so a later question over the same segment
reads it for free; ``speech`` gives a SpeechLLM the hits' audio itself
(:mod:`speechrag.speech_answer`), which also takes a spoken question as speech
(``speech_llm``).

Before the prompt is built, overlapping hits of one recording become one passage and
the passages are cut to the sentences most like the question until they fit
``context_tokens`` (:mod:`speechrag.context`; 0 keeps every word): prompt tokens are
what the time to the first token is spent on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechrag.index import Hit, Index
from speechrag.llm import LLM, LLMConfig, Messages, load_llm
from speechrag.timestamps import mmss

NO_ANSWER = "The recordings do not say."
MAX_QUESTION_CHARS = 1000
CONTEXTS = ("stored", "asr", "speech")
CONTEXT_TOKENS = 300  # the passages' budget in the prompt: benchmarks/answer_prompt.py --budgets
ASR_MODEL = "whisper-base"  # the cascade's ASR, and the one `--context asr` uses


def _system(passages: str) -> str:
    """The instruction, for passages that are ``passages``."""
    return (f"Answer the question using only the numbered passages below, {passages}. "
            "Reply with the answer in a few words, then the number of the passage it comes "
            "from in brackets, for example: Paris [2]. If no passage answers the question, "
            f"reply exactly: {NO_ANSWER}")


# chosen on train-split questions: benchmarks/answer_prompt.py
SYSTEM = _system("which are transcripts of recordings")
SPEECH_SYSTEM = _system("some of which are recordings")  # for a SpeechLLM that hears them
CLOSED_BOOK = "Answer the question in a few words."  # the benchmark's no-retrieval row


@dataclass(frozen=True)
class Citation:
    """A hit the answer cites as ``[n]`` (n counts from 1 in prompt order)."""

    n: int
    source: str
    start: float | None
    end: float | None
    score: float
    id: str = ""


@dataclass
class Answer:
    """One answered question. ``timings`` (ms unless named otherwise): retrieve_ms (the
    question's words and vector, and the search), transcribe_ms (a spoken question's
    Whisper transcript, for an end-to-end index), context_ms (``asr`` transcription),
    first_token_ms and total_ms (from the question to the first / last piece of the
    answer), tokens_per_s (pieces streamed after the first, per second)."""

    query: str
    text: str
    citations: list[Citation]
    hits: list[Hit]
    timings: dict[str, float]
    dropped: int = 0  # hits that did not fit the LLM's context (left out of the prompt)
    heard: str | None = None  # what a spoken question was heard to say
    context: str = "stored"
    prompt_tokens: int = 0
    no_answer: bool = False  # the LLM said the recordings do not say

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Prompt:
    """Chat messages for the LLM, with the hits they number (in order) and the ones left
    out because they did not fit."""

    messages: Messages
    hits: list[Hit]
    dropped: int
    tokens: int


def describe(hit: Hit) -> str:
    """``file.wav, 01:20-02:00`` for audio, the document's id for text."""
    if hit.start is None:
        return hit.source
    return f"{Path(hit.source).name}, {mmss(hit.start)}-{mmss(hit.end)}"


def messages_for(question: str, hits: list[Hit], texts: list[str]) -> Messages:
    """The chat messages: the instruction, then the passages numbered from 1, each with
    its source and span, then the question. No hits: the closed-book prompt."""
    if not hits:
        return [{"role": "system", "content": CLOSED_BOOK},
                {"role": "user", "content": question}]
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": _numbered(question, [describe(h) for h in hits],
                                                   [" ".join(t.split()) for t in texts])}]


def _numbered(question: str, labels: list[str], bodies: list[str]) -> str:
    """The user turn: the passages numbered from 1, each with its label (source and
    span) and its body, then the question."""
    passages = "\n\n".join(f"[{n}] ({label})\n{body}" for n, (label, body)
                           in enumerate(zip(labels, bodies, strict=True), start=1))
    return f"Passages:\n\n{passages}\n\nQuestion: {question}"


def speech_prompt(question: str | None, labels: list[str], texts: list[str | None]
                  ) -> tuple[str, str]:
    """(system, user) of a SpeechLLM's prompt, laid out as :func:`messages_for`'s: the
    passages numbered from 1 with their ``labels`` (source and span), then the question.
    A passage whose text is None is given as its speech, and a question of None is the
    spoken question: each is a SPEECH marker (:mod:`speechrag.models.speechllm`), in
    order, passages first. The SpeechLLM is fine-tuned on this same layout."""
    from speechrag.models.speechllm import SPEECH

    bodies = [SPEECH if t is None else " ".join(t.split()) for t in texts]
    return SPEECH_SYSTEM, _numbered(SPEECH if question is None else question, labels, bodies)


def build_prompt(question: str, hits: list[Hit], texts: list[str], llm: LLM,
                 max_tokens: int) -> Prompt:
    """The prompt for ``question`` over ``hits`` (best first) that fits the LLM's context
    with room for ``max_tokens`` of answer: hits are taken in rank order, and one that
    would overflow is left out (counted in ``dropped``) while later, shorter ones may
    still fit. A question that does not fit even alone is a ValueError."""
    budget = llm.n_ctx - max_tokens
    kept: list[int] = []
    tokens = llm.count_tokens(messages_for(question, [], []))
    if tokens > budget:
        raise ValueError(f"the question is too long for the LLM's context ({tokens} tokens "
                         f"of {budget} left for the prompt); shorten it")
    for i in range(len(hits)):
        trial = kept + [i]
        n = llm.count_tokens(messages_for(question, [hits[j] for j in trial],
                                          [texts[j] for j in trial]))
        if n <= budget:
            kept, tokens = trial, n
    chosen = [hits[j] for j in kept]
    return Prompt(messages_for(question, chosen, [texts[j] for j in kept]) if chosen else
                  [{"role": "system", "content": SYSTEM},
                   {"role": "user", "content": f"Passages: none.\n\nQuestion: {question}"}],
                  chosen, len(hits) - len(kept), tokens)


_CITE = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")


def cited(answer: str, n_hits: int) -> list[int]:
    """The passage numbers an answer cites (``[2]``, ``[1, 3]``, ``[1][2]``), each once, in
    the order first cited; numbers outside 1..n_hits are ignored."""
    out: list[int] = []
    for group in _CITE.findall(answer):
        for part in re.split(r"[,;]", group):
            n = int(part)
            if 1 <= n <= n_hits and n not in out:
                out.append(n)
    return out


_NO_ANSWER = re.compile(r"\b(?:do|does|did)\s*(?:not|n't)\s+say\b", re.IGNORECASE)


def says_no_answer(answer: str) -> bool:
    """The answer is the "recordings do not say" refusal (in any of its wordings)."""
    return bool(_NO_ANSWER.search(answer))


def check_question(question: str) -> str:
    words = " ".join(question.split())
    if not words:
        raise ValueError("the question is empty: give its words")
    if len(words) > MAX_QUESTION_CHARS:
        raise ValueError(f"the question is {len(words)} characters long, more than "
                         f"{MAX_QUESTION_CHARS}; ask it in fewer words")
    return words


@dataclass
class Retrieved:
    """A question's words, its hits (best first), and what it took to get them."""

    words: str
    hits: list[Hit]
    heard: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


class AnswerStream:
    """The answer's pieces as the LLM writes them (iterate once); ``answer`` holds the
    whole :class:`Answer` when the iteration ends. ``prompt`` is known before the first
    piece, so a caller can say which hits were left out before the answer starts."""

    def __init__(self, llm: Any, query: str, retrieved: Retrieved, prompt: Prompt,
                 max_tokens: int, context: str, t0: float,
                 timings: dict[str, float],
                 generate: Callable[[], Iterator[str]] | None = None) -> None:
        """``generate``: where the pieces come from (default: ``llm`` streaming the
        prompt's messages; the SpeechLLM gives its own)."""
        self.llm, self.query, self.retrieved, self.prompt = llm, query, retrieved, prompt
        self.max_tokens, self.context, self.t0 = max_tokens, context, t0
        self.timings = timings
        self.generate = generate or (lambda: llm.stream(prompt.messages, max_tokens))
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        pieces: list[str] = []
        first = None
        for piece in self.generate():
            if first is None:
                first = time.perf_counter()
            pieces.append(piece)
            yield piece
        end = time.perf_counter()
        text = "".join(pieces).strip()
        hits = self.prompt.hits
        cites = [Citation(n, hits[n - 1].source, hits[n - 1].start, hits[n - 1].end,
                          hits[n - 1].score, hits[n - 1].id) for n in cited(text, len(hits))]
        first = first or end
        self.answer = Answer(
            query=self.query, text=text, citations=cites, hits=self.retrieved.hits,
            timings={**self.timings, "first_token_ms": (first - self.t0) * 1000,
                     "total_ms": (end - self.t0) * 1000,
                     "tokens_per_s": (len(pieces) - 1) / (end - first)
                     if len(pieces) > 1 and end > first else 0.0},
            dropped=self.prompt.dropped, heard=self.retrieved.heard, context=self.context,
            prompt_tokens=self.prompt.tokens, no_answer=says_no_answer(text))

    def text(self) -> Answer:
        """Consume the stream and return the answer."""
        for _ in self:
            pass
        assert self.answer is not None
        return self.answer


class Asker:
    """Answers questions from one index with one LLM (both loaded once; ask many).

    ``index_dir``: an index folder, or an open :class:`Index` (with its ``retriever``
    already loaded, as the server has them). ``llm``: an LLM, an :class:`LLMConfig`, or a
    model name / ``.gguf`` path / server URL (default: the shipped default LLM).
    ``context``: ``stored``, ``asr`` or ``speech`` (module doc). ``context_tokens``: the
    most tokens of passage text the prompt holds (the hits are cut to their sentences
    most like the question to fit); 0 gives the LLM every word of every hit; None,
    ``CONTEXT_TOKENS``. ``speech_llm``: a spoken question goes into the SpeechLLM as
    speech (True: the shipped projector, or a checkpoint's path); with ``context
    "speech"`` the SpeechLLM answers in any case, and ``llm`` is not used.
    """

    def __init__(self, index_dir: str | Path | Index,
                 llm: LLM | LLMConfig | str | None = None, context: str = "stored",
                 max_tokens: int | None = None, retriever: Any = None,
                 context_tokens: int | None = None,
                 speech_llm: str | Path | bool | None = None) -> None:
        from speechrag.retrievers import from_spec

        if context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r}; one of {', '.join(CONTEXTS)}")
        if context_tokens is None:
            context_tokens = CONTEXT_TOKENS
        if context_tokens < 0:
            raise ValueError(f"context_tokens must be 0 (every word) or more, not "
                             f"{context_tokens}")
        self.index = index_dir if isinstance(index_dir, Index) else Index.open(index_dir)
        if len(self.index) == 0:
            raise ValueError(f"{self.index.path}: the index holds nothing yet, so there is "
                             "nothing to answer from; index audio or documents into it first")
        self.retriever = retriever or from_spec(self.index.config.model)
        config = llm if isinstance(llm, LLMConfig) else None
        self.speech: Any = None  # the SpeechAnswerer, when speech goes into the LLM
        self.speech_question = bool(speech_llm)
        if context == "speech" or speech_llm:
            from speechrag.speech_answer import SpeechAnswerer

            self.speech = SpeechAnswerer(speech_llm if isinstance(speech_llm, str | Path)
                                         else None)
            self.llm: Any = self.speech
        else:
            self.llm = (load_llm(llm) if llm is None or isinstance(llm, str | LLMConfig)
                        else llm)
        self.max_tokens = max_tokens or (config or LLMConfig()).max_tokens
        self.context = context
        self.context_tokens = context_tokens
        self._whisper: Any = None

    # -- the question's words and hits ---------------------------------------------------------

    @property
    def whisper(self) -> Any:
        """Whisper base (loaded on first use): spoken questions to an end-to-end index,
        and ``asr`` context."""
        if self._whisper is None:
            from speechrag.retrievers.cascade import CascadeConfig, CascadeRetriever, Transcriber

            own = self.retriever
            self._whisper = (own.asr if isinstance(own, CascadeRetriever)
                             and own.config.whisper == ASR_MODEL
                             else Transcriber(CascadeConfig(whisper=ASR_MODEL)))
        return self._whisper

    def _reads_speech_itself(self) -> bool:
        """The index's model transcribes with Whisper base already (the cascade): its
        stored text and its reading of a spoken question are the ASR's."""
        from speechrag.retrievers.cascade import CascadeRetriever

        own = self.retriever
        return isinstance(own, CascadeRetriever) and own.config.whisper == ASR_MODEL

    def retrieve(self, question: str | None = None, audio: np.ndarray | None = None,
                 k: int = 5, source: str = "the spoken question") -> Retrieved:
        """Top-k hits for a written question, or for speech ((n,) float32 at 16 kHz)."""
        if (question is None) == (audio is None):
            raise ValueError("give a question's text or its audio, not both")
        if k < 1:
            raise ValueError("k must be at least 1")
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        heard = None
        if question is not None:
            words = check_question(question)
            vectors = self.retriever.encode_text([words])
        else:
            vectors, model_heard = self.retriever.encode_query_audio([audio])
            if self.speech_question:  # the SpeechLLM hears it: no transcript is made
                hits = self.index.search(vectors, k)[0]
                timings["retrieve_ms"] = (time.perf_counter() - t0) * 1000
                return Retrieved(" ".join((model_heard[0] or "").split()), hits,
                                 model_heard[0], timings)
            if self._reads_speech_itself():
                heard = model_heard[0] or ""
            else:
                t1 = time.perf_counter()
                heard = self.whisper.transcribe(audio)
                timings["transcribe_ms"] = (time.perf_counter() - t1) * 1000
            if not heard.strip():
                raise ValueError(f"{source}: no words were heard in it")
            words = check_question(heard)
        hits = self.index.search(vectors, k)[0]
        timings["retrieve_ms"] = (time.perf_counter() - t0) * 1000
        return Retrieved(words, hits, heard, timings)

    # -- the text each hit gives the LLM -------------------------------------------------------

    def passages(self, question: str, hits: list[Hit], texts: list[str]
                 ) -> tuple[list[Hit], list[str]]:
        """The hits (best first) and their texts as the prompt gives them: overlapping
        hits merged, texts cut to ``context_tokens`` (:mod:`speechrag.context`)."""
        from speechrag import context

        hits, texts = context.merge_overlapping(hits, texts)
        if self.context_tokens:
            texts = context.focus(question, texts, self.context_tokens, self.llm.count_text,
                                  context.sentence_encoder())
        return hits, texts

    def context_texts(self, hits: list[Hit]) -> tuple[list[str], float]:
        """The text of each hit for the prompt, and the ms spent transcribing (``asr``).
        Hits not transcribed before are transcribed in runs: overlapping windows of one
        recording are one Whisper pass over their union (with word times), and each
        window gets the words whose middle lies in it, as the single-pass cascade cuts
        them, so no second of audio is transcribed twice."""
        if self.context == "stored" or self._reads_speech_itself():
            return [h.text or "" for h in hits], 0.0
        from speechrag.audio import AudioError, read_span
        from speechrag.context import overlapping_runs
        from speechrag.retrievers.cascade import words_in

        t0 = time.perf_counter()
        audio_hits = [h for h in hits if h.start is not None]
        known = self.index.transcripts([h.id for h in audio_hits], ASR_MODEL)
        todo = [h for h in audio_hits if h.id not in known]
        new: dict[str, str] = {}
        for run in overlapping_runs(todo):  # in time order
            first, last = todo[run[0]], max((todo[j] for j in run), key=lambda h: h.end or 0.0)
            start, end = first.start or 0.0, last.end or 0.0
            try:
                samples = read_span(first.source, start, end)
            except AudioError:  # the recording moved or changed: keep the stored text
                continue
            words = self.whisper.transcribe_words(samples)
            for j in run:
                h = todo[j]
                new[h.id] = words_in(words, (h.start or 0.0) - start, (h.end or 0.0) - start)
        if new:
            self.index.store_transcripts(new, ASR_MODEL)
        texts = {**known, **new}
        return [texts.get(h.id, h.text or "") for h in hits], (time.perf_counter() - t0) * 1000

    # -- answering ---------------------------------------------------------------------------

    def stream(self, question: str | None = None, audio: np.ndarray | None = None,
               k: int = 5, source: str = "the spoken question",
               retrieved: Retrieved | None = None) -> AnswerStream:
        """Retrieve, build the prompt, and return the stream of the answer (nothing is
        generated until it is iterated). ``retrieved`` skips retrieval (given hits)."""
        t0 = time.perf_counter()
        got = retrieved or self.retrieve(question, audio, k, source)
        if self.speech is not None:
            return self._speech_stream(got, audio, t0, retrieved is not None)
        texts, context_ms = self.context_texts(got.hits)
        hits, texts = self.passages(got.words, got.hits, texts)
        prompt = build_prompt(got.words, hits, texts, self.llm, self.max_tokens)
        timings = dict(got.timings)
        if context_ms:
            timings["context_ms"] = context_ms
        return AnswerStream(self.llm, got.words, got, prompt, self.max_tokens, self.context,
                            t0 - got.timings.get("retrieve_ms", 0.0) / 1000 if retrieved
                            else t0, timings)

    def _speech_stream(self, got: Retrieved, audio: np.ndarray | None, t0: float,
                       given: bool) -> AnswerStream:
        """The SpeechLLM's answer: passages as audio (``context`` speech; a text
        document, or a recording that can no longer be read, stays text) or as text,
        and the question as speech (``speech_llm``) or as words."""
        from speechrag import context
        from speechrag.audio import AudioError, read_span

        if self.context == "speech":
            texts, context_ms = [h.text or "" for h in got.hits], 0.0
        else:
            texts, context_ms = self.context_texts(got.hits)
        hits, texts = context.merge_overlapping(got.hits, texts)
        spoken_q = self.speech_question and audio is not None
        if self.context != "speech" and self.context_tokens and got.words:
            texts = context.focus(got.words, texts, self.context_tokens,
                                  self.speech.count_text, context.sentence_encoder())
        audios: list[np.ndarray | None] = []
        for h in hits:
            samples = None
            if self.context == "speech" and h.start is not None:
                try:
                    samples = read_span(h.source, h.start, h.end or h.start)
                except AudioError:  # moved or changed since indexing: its stored text
                    samples = None
            audios.append(samples)
        sp = self.speech.prompt(None if spoken_q else got.words, audio if spoken_q else None,
                                [describe(h) for h in hits],
                                [None if a is not None else t for a, t in zip(audios, texts,
                                                                              strict=True)],
                                audios, self.max_tokens)
        prompt = Prompt([{"role": "system", "content": sp.system},
                         {"role": "user", "content": sp.user}],
                        [hits[i] for i in sp.kept], sp.dropped, sp.tokens)
        timings = dict(got.timings)
        if context_ms:
            timings["context_ms"] = context_ms
        query = got.words or "(spoken question)"
        return AnswerStream(self.speech, query, got, prompt, self.max_tokens, self.context,
                            t0 - got.timings.get("retrieve_ms", 0.0) / 1000 if given else t0,
                            timings, lambda: self.speech.stream(sp, self.max_tokens))

    def ask(self, question: str | None = None, audio: np.ndarray | None = None,
            k: int = 5) -> Answer:
        return self.stream(question, audio, k).text()
