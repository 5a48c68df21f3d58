"""The hits' text an LLM reads, made short: prompt tokens are time to first token.

On 2 cores the default 1.5B LLM reads about 100 prompt tokens a second, so five 40 s
windows (about 830 tokens with the instruction) cost 7-8 s before the answer starts,
although most of those words are about something else: a window holds the end of one
passage and the start of the next, and with a 20 s hop the top hits often overlap.
Two steps cut the prompt, both measured on train-split questions only
(``benchmarks/answer_prompt.py``):

1. :func:`merge_overlapping`: hits of one recording whose spans overlap become one
   passage (their union span, the words they share said once), cited as one moment.
2. :func:`focus`: when the passages still hold more than ``budget`` tokens, each is cut
   into sentences, every sentence is scored against the question by a small sentence
   encoder (all-MiniLM-L6-v2 through ONNX Runtime: a few ms), each passage keeps its best
   sentence, and then the best sentences of all passages are added until the budget is
   spent. Kept sentences stay in their order; ``…`` marks words left out.

Sentence scoring is written here rather than taken from a RAG framework (LlamaIndex,
LangChain): those bring hundreds of dependencies for what is a split, one encoder call
and a sort.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from speechrag.index import Hit

GAP = "…"  # marks words of a passage left out of the prompt
MAX_WORDS = 40  # a "sentence" longer than this (unpunctuated text) is cut into pieces
MIN_SHARED = 3  # words two overlapping windows must share to be spliced into one text
FOCUS_ENCODER = "all-MiniLM-L6-v2"

Embed = Callable[[list[str]], np.ndarray]  # N texts -> (N, D) unit vectors
Count = Callable[[str], int]  # a text -> its tokens


def _norm(word: str) -> str:
    return re.sub(r"\W+", "", word.casefold())


def splice(a: str, b: str) -> str:
    """The words of two overlapping windows, ``a`` starting first, said once: ``a`` up to
    the longest run of words the two share near ``a``'s end and ``b``'s start, then ``b``
    from there. Two transcripts of the same audio differ a little at their cut edges, so
    the run is found by :mod:`difflib`, not required at the exact edge. No run of
    ``MIN_SHARED`` words: both texts, one after the other."""
    aw, bw = a.split(), b.split()
    if not aw or not bw:
        return " ".join(aw + bw)
    an, bn = [_norm(w) for w in aw], [_norm(w) for w in bw]
    span = min(len(aw), len(bw))
    match = difflib.SequenceMatcher(None, an, bn, autojunk=False).find_longest_match(
        len(an) - span, len(an), 0, span)
    if match.size < min(MIN_SHARED, span):
        return " ".join(aw) + " " + " ".join(bw)
    return " ".join(aw[:match.a] + bw[match.b:])


def overlapping_runs(hits: list[Hit]) -> list[list[int]]:
    """Indices of ``hits`` (best first) in runs: hits of one recording whose spans
    overlap, directly or through another hit, are one run, in time order; a text document
    (no span) is a run alone. Runs come in the order of their best hit."""
    runs: list[list[int]] = []
    by_source: dict[str, list[int]] = {}
    for i, h in enumerate(hits):
        if h.start is None:
            runs.append([i])
        else:
            by_source.setdefault(h.source, []).append(i)
    for ids in by_source.values():
        ids.sort(key=lambda i: hits[i].start or 0.0)
        run, end = [ids[0]], hits[ids[0]].end or 0.0
        for i in ids[1:]:
            if (hits[i].start or 0.0) < end:
                run.append(i)
                end = max(end, hits[i].end or 0.0)
            else:
                runs.append(run)
                run, end = [i], hits[i].end or 0.0
        runs.append(run)
    return sorted(runs, key=min)


def merge_overlapping(hits: list[Hit], texts: list[str]) -> tuple[list[Hit], list[str]]:
    """Hits (best first) and their texts -> passages: each run of overlapping hits
    (:func:`overlapping_runs`) is one passage with their union span, the best score and
    the best hit's id, in the place of its best hit. Text documents stay as they are."""
    out_hits, out_texts = [], []
    for run in overlapping_runs(hits):
        best = hits[min(run)]
        if len(run) == 1:
            out_hits.append(best)
            out_texts.append(texts[run[0]])
            continue
        text = texts[run[0]]
        for j in run[1:]:
            text = splice(text, texts[j])
        out_hits.append(replace(best, start=hits[run[0]].start,
                                end=max(hits[j].end or 0.0 for j in run), text=text))
        out_texts.append(text)
    return out_hits, out_texts


def sentences_of(text: str) -> list[str]:
    """A passage's sentences (split after . ! ?); a piece longer than ``MAX_WORDS`` words,
    as unpunctuated transcripts have, is cut into near-equal pieces."""
    out: list[str] = []
    for piece in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        words = piece.split()
        if not words:
            continue
        n = math.ceil(len(words) / MAX_WORDS)
        size = math.ceil(len(words) / n)
        out += [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    return out


def focus(question: str, texts: list[str], budget: int, count: Count,
          embed: Embed) -> list[str]:
    """Each passage's text cut to the sentences most like ``question`` so that all of
    them hold at most about ``budget`` tokens (each passage keeps at least its best
    sentence, so a passage is never emptied; that sentence may overrun a small budget).
    Passages already within the budget come back whole."""
    pieces = [sentences_of(t) for t in texts]
    tokens = [[count(s) for s in p] for p in pieces]
    if sum(map(sum, tokens)) <= budget:
        return [" ".join(p) for p in pieces]
    flat = [(i, j) for i, p in enumerate(pieces) for j in range(len(p))]
    if not flat:
        return ["" for _ in texts]
    vectors = embed([question] + [pieces[i][j] for i, j in flat])
    sims = vectors[1:] @ vectors[0]
    keep: set[tuple[int, int]] = set()
    used = 0
    for i in range(len(pieces)):  # every passage keeps its best sentence
        own = [n for n, (pi, _) in enumerate(flat) if pi == i]
        if own:
            best = max(own, key=lambda n: sims[n])
            keep.add(flat[best])
            used += tokens[i][flat[best][1]]
    for n in np.argsort(-sims, kind="stable"):
        i, j = flat[n]
        if (i, j) not in keep and used + tokens[i][j] <= budget:
            keep.add((i, j))
            used += tokens[i][j]
    out = []
    for i, p in enumerate(pieces):
        parts: list[str] = []
        last = -1
        for j, sentence in enumerate(p):
            if (i, j) in keep:
                if j != last + 1:
                    parts.append(GAP)
                parts.append(sentence)
                last = j
        if p and last != len(p) - 1:
            parts.append(GAP)
        out.append(" ".join(parts))
    return out


def sentence_encoder() -> Embed:
    """The encoder :func:`focus` scores with (ONNX Runtime; loaded once per process)."""
    from speechrag.retrievers.text_side import onnx_encoder

    return onnx_encoder(FOCUS_ENCODER).encode
