"""Hybrid search: dense candidates re-ranked with a lexical match on their transcripts.

Every model that writes a transcript per segment (the cascade's Whisper text, CLSR's
rough transcript, a text document's own text) leaves the index something a question's
words can be matched against. Hybrid search takes the ``candidates`` best segments by
cosine and re-ranks them by

    cosine(query, segment) + weight x lexical(query text, segment transcript)

where ``lexical`` is the cosine of character n-gram TF-IDF vectors (3 to 5 characters
inside word bounds, sublinear term frequency, inverse document frequency over the whole
index). Character n-grams rather than words because an end-to-end model's errors are
mostly spelling ("the bornin ormatn" for "the Bornean orangutan", "coralrre reeffish"
for "coral reef fish"): a misspelled name still shares character trigrams with the
question's. Dense retrieval stays the first stage,
so the dense model decides which segments are considered, and a segment without a
transcript keeps its cosine.

scikit-learn's TfidfVectorizer does the counting (it comes with sentence-transformers;
imported on first use, so the CLI starts without it).
Shapes: N segments in the index, M candidates; scores are (M,) float32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Chosen on held-out train passages (validation), never on test (README "Hybrid search",
# docs/training.md CLSR section 15): on two renditions of 91 held-out passages it lifted
# CLSR's written R@1 87.8 -> 91.3 and 90.1 -> 91.9, and moved the cascade's by at most a
# question.
DEFAULT_WEIGHT = 0.3


@dataclass(frozen=True)
class HybridConfig:
    """How a search mixes the lexical match in. ``weight`` 0 is dense search alone."""

    weight: float = DEFAULT_WEIGHT
    candidates: int = 100  # dense hits re-ranked (at least the k asked for)
    ngram_min: int = 3
    ngram_max: int = 5

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"hybrid weight must be >= 0, not {self.weight}")
        if self.candidates < 1:
            raise ValueError(f"hybrid candidates must be >= 1, not {self.candidates}")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError(f"hybrid n-gram range {self.ngram_min}..{self.ngram_max} is empty")

    @property
    def active(self) -> bool:
        """Whether this config re-ranks at all (weight 0 is dense search)."""
        return self.weight > 0

    def to_dict(self) -> dict:
        return asdict(self)


class LexicalScorer:
    """Character n-gram TF-IDF over an index's transcripts, fitted once.

    ids (N,) segment ids, texts (N,) their transcripts (None or "" where a model wrote
    none). Raises ValueError when no segment has a transcript (a SEAL index)."""

    def __init__(self, ids: list[str], texts: list[str | None],
                 config: HybridConfig | None = None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer  # heavy: on first use

        config = config or HybridConfig()
        docs = [t or "" for t in texts]
        if not any(d.strip() for d in docs):
            raise ValueError("no segment has a transcript, so there is nothing to match "
                             "words against: hybrid search needs a model that writes one "
                             "(cascade, clsr, clsr+seal) or a text-document index")
        self.row = {i: n for n, i in enumerate(ids)}
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", sublinear_tf=True,
                                          ngram_range=(config.ngram_min, config.ngram_max),
                                          dtype=np.float32)
        self.matrix = self.vectorizer.fit_transform(docs)  # (N, F) sparse, rows unit norm

    def scores(self, query: str, ids: list[str]) -> np.ndarray:
        """The lexical similarity in [0, 1] of ``query`` to each segment in ``ids`` (M,)."""
        if not ids:
            return np.zeros(0, dtype=np.float32)
        q = self.vectorizer.transform([query])  # (1, F), unit norm (or zero)
        rows = self.matrix[[self.row[i] for i in ids]]
        return np.asarray((rows @ q.T).todense(), dtype=np.float32).ravel()


def rerank(dense: np.ndarray, lexical: np.ndarray, weight: float) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """dense (M,) cosines, lexical (M,) -> (order (M,) best first, combined scores (M,)).
    Ties keep the dense order (a stable sort)."""
    combined = dense.astype(np.float32) + np.float32(weight) * lexical
    return np.argsort(-combined, kind="stable"), combined
