"""The clean-text upper bound: each segment represented by the reference words spoken
inside it, embedded by the text encoder (what a perfect ASR would give the cascade)."""

from __future__ import annotations

import numpy as np

from speechrag.retrievers.cascade import CascadeConfig, CascadeRetriever
from speechrag.segment import Segment

Spoken = dict[str, list[tuple[float, float, str]]]  # source -> [(start_s, end_s, text)]


def words_between(spoken: list[tuple[float, float, str]], start_s: float, end_s: float) -> str:
    """The reference words said in [start_s, end_s), with each passage's words spread
    evenly over its span (start_s, end_s, text) and a word counted where its midpoint is."""
    words: list[str] = []
    for start, end, text in spoken:
        if end <= start_s or start >= end_s:
            continue
        tokens = text.split()
        step = (end - start) / max(len(tokens), 1)
        words += [w for i, w in enumerate(tokens) if start_s <= start + (i + 0.5) * step < end_s]
    return " ".join(words)


class GoldTextRetriever(CascadeRetriever):
    """The cascade with a perfect ASR: its text side, and the reference words as each
    segment's transcript. Word times inside a passage are not known, so a passage's words
    are spread evenly over its gold span and a segment gets the words whose midpoint falls
    inside it. The evaluator builds one with the corpus manifest (``spoken``); rebuilt from
    an index's spec it has none and only searches by text."""

    kind = "gold-text"

    def __init__(self, config: CascadeConfig | None = None, spoken: Spoken | None = None
                 ) -> None:
        super().__init__(config or CascadeConfig(whisper="none"))
        self.spoken = spoken or {}

    def text_of(self, segment: Segment) -> str:
        return words_between(self.spoken.get(segment.source, []), segment.start_s, segment.end_s)

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        texts = [self.text_of(s) for s in segments]
        return self.text.encode(texts), list(texts)

    def encode_query_audio(self, samples: list[np.ndarray]
                           ) -> tuple[np.ndarray, list[str | None]]:
        raise ValueError("the clean-text upper bound has no speech front end: ask it "
                         "written questions")
