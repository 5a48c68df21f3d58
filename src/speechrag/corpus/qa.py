"""WikiSpoken-QA: questions with short gold answers that are spoken in one passage of a
built corpus, for the answer benchmark (``benchmarks/answers.py``). No model writes
them, and they are the same on every run.

Two kinds, per spoken passage (in manifest order):

- ``title``: the passage's topic asked through its human-written description
  (``Which topic is described as "form of body modification"?`` -> ``Body piercing``),
  kept only when the title is spoken in the passage and the description is unique.
- ``blank``: a sentence of the passage with a name or a number blanked
  (``Complete the sentence: "Franklin was an ___ chemist."`` -> ``English``); at most
  ``blanks`` per passage: one from each sentence first, then a second from sentences
  that have two; in a sentence numbers come first (years, counts), then names
  (capitalised words inside a sentence, not the topic's own).

``text`` is the written question; ``spoken`` is what the evaluation voices say (the
blank read as "blank"). Questions are built from **test** (or dev) corpora only.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from speechrag.corpus import tts
from speechrag.corpus.build import Corpus, _synthesize_all, load_corpus, write_jsonl
from speechrag.corpus.wikispoken import _description_counts, sentences

QA_FILE = "qa.jsonl"
QA_AUDIO = "qa_audio"
BLANK = "___"
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w])")
_NAME = re.compile(r"(?<=[a-z,;:] )([A-Z][a-zA-Z'-]+(?: (?:of |de |von |van )?[A-Z][a-zA-Z'-]+)*)")


def normalize(text: str) -> str:
    """Lower case, accents folded, possessive 's and punctuation dropped (thousands commas
    too), spaces collapsed: how gold and answer strings are compared."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.casefold())
    text = re.sub(r"(?<=\w)['\u2019]s\b", "", text)
    return " ".join(re.sub(r"[^a-z0-9.]+|(?<!\d)\.|\.(?!\d)", " ", text).split())


def contains(answer: str, gold: str) -> bool:
    """The normalized gold is in the normalized answer, on word boundaries."""
    a, g = f" {normalize(answer)} ", f" {normalize(gold)} "
    return g.strip() != "" and g in a


def _blanks(sentence: str, title: str) -> list[tuple[str, str]]:
    """(question sentence, gold) candidates in one sentence: each number, then each name
    that appears once in it and is not part of the topic."""
    out: list[tuple[str, str]] = []
    if (" , " in sentence or " ." in sentence or sentence.count(" ") < 4
            or not sentence[0].isupper()):
        return out  # a removed parenthetical left a gap (", and ."): no sentence to ask
    topic = set(normalize(title).split())
    for rx in (_NUMBER, _NAME):
        for m in rx.finditer(sentence):
            gold = m.group(1)
            if sentence.count(gold) != 1 or len(normalize(gold)) < 2:
                continue
            if rx is _NAME and set(normalize(gold).split()) & topic:
                continue
            out.append((sentence[:m.start(1)] + BLANK + sentence[m.end(1):], gold))
    return out


def questions_for(passage: dict, blanks: int = 5) -> list[dict]:
    """The questions of one spoken passage (a manifest line: passage_id, title, text)."""
    pid, title, text = passage["passage_id"], passage["title"], passage["text"]
    out: list[dict] = []
    description = passage.get("description", "")
    topic = re.sub(r"\s*\(.*\)$", "", title)  # "Mercury (planet)" is spoken as "Mercury"
    if (description and _description_counts()[description.casefold()] <= 1
            and contains(text, topic)):
        d = description[0].lower() + description[1:]
        out.append({"id": f"{pid}-qa-t", "kind": "title", "passage_id": pid, "gold": topic,
                    "text": f'Which topic is described as "{d}"?',
                    "spoken": f"Which topic is described as {d}?"})
    # first one blank from each sentence, then a second one where a sentence has more
    found = [_blanks(s, topic) for s in sentences(text)]
    order = [(i, j) for j in range(2) for i in range(len(found)) if j < len(found[i])]
    for i, j in order[:blanks]:
        blanked, gold = found[i][j]
        out.append({"id": f"{pid}-qa-b{i}-{j}", "kind": "blank", "passage_id": pid,
                    "gold": gold, "text": f'Complete the sentence: "{blanked}"',
                    "spoken": "Complete the sentence: " + blanked.replace(BLANK, "blank")})
    return out


def build_questions(corpus: Corpus, blanks: int = 5) -> list[dict]:
    """Every question of a built test or dev corpus, in manifest order (each passage once
    even when spoken twice)."""
    if corpus.config.get("split") == "train":
        raise ValueError(f"{corpus.root}: a train corpus; the answer benchmark is built "
                         "from test or dev passages only")
    from speechrag.corpus.wikispoken import load_passages

    described = {p.passage_id: p.description for p in load_passages()}
    seen: set[str] = set()
    out: list[dict] = []
    for m in corpus.manifest:
        if m["passage_id"] in seen:
            continue
        seen.add(m["passage_id"])
        out += questions_for({**m, "description": described.get(m["passage_id"], "")},
                             blanks)
    return out


def write_questions(root: str | Path, blanks: int = 5, speak: bool = True,
                    voices: tuple[str, ...] = tts.EVALUATION,
                    on_progress: Callable[[int, int], None] | None = None,
                    workers: int = 1) -> list[dict]:
    """Build the questions of a corpus into ``qa.jsonl`` and, with ``speak``, say each in
    one evaluation voice (``qa_audio/<id>.wav``, the line's ``audio``). Resumable."""
    root = Path(root)
    corpus = load_corpus(root)
    rows = build_questions(corpus, blanks)
    if speak:
        for v in voices:
            if tts.role_of(v) != "evaluation":
                raise tts.VoiceError(f"{v!r} is not an evaluation voice; the answer "
                                     f"benchmark speaks in {', '.join(tts.EVALUATION)}")
        for engine in {v.partition(":")[0] for v in voices}:
            tts.check_engine(engine)
        jobs = []
        for q in rows:
            spec = voices[int(hashlib.sha1(q["id"].encode()).hexdigest()[:8], 16) % len(voices)]
            voice = tts.parse_voice(spec)
            q["voice"], q["audio"] = voice.id, f"{QA_AUDIO}/{q['id']}.wav"
            jobs.append((q["spoken"], voice, root / q["audio"]))
        _synthesize_all(jobs, workers, on_progress)
    write_jsonl(root / QA_FILE, rows)
    return rows
