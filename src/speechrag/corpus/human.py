"""Real human speech as a spoken-query corpus, beside the same sentences in TTS voices.

Every other figure of this project is measured on synthetic voices, and every model it
trains has heard synthetic voices only. The one recorded human speech that ships offline
is Debian's ``pocketsphinx-testdata`` (../shared/ASSETS.md): five LibriVox utterances
read from *Sense and Sensibility* (25 s) and five short "cards" utterances ("ten of
clubs", 11 s), each with its transcript. Too small for a benchmark, big enough to show a
model that falls apart on a human voice: each utterance is a spoken query whose target is
its own transcript among thousands of text sentences, and the same sentences spoken by
the evaluation voices are asked beside it, so one report holds both (``by_voice``).

A corpus of layout "queries" (see :mod:`speechrag.corpus.build`), read by the one
evaluator (``evaluate(corpus, model, out, spoken=True)``)::

    corpus.json           what was built (data set, voices, distractors)
    documents.jsonl       the transcripts, then the distractor sentences: every sentence
                          of the WikiSpoken test split (never trained on)
    queries.jsonl         one per utterance: id, text (its transcript), kind (librivox |
                          cards), passage_id (= id: the target is its own transcript)
    spoken_queries.jsonl  each utterance in voice "human" (the recording) and in each TTS
                          voice, audio under query_audio/
    manifest.jsonl        empty (no long-form recordings)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from speechrag import audio
from speechrag.corpus import tts
from speechrag.corpus.build import (
    DOCUMENTS,
    SPOKEN_QUERIES,
    Corpus,
    CorpusConfig,
    load_corpus,
    write_jsonl,
)
from speechrag.corpus.wikispoken import passages, sentences

DATA = Path("/usr/share/pocketsphinx/test/data")
# set name -> (transcript file, folder of its recordings), relative to DATA
SETS = {"librivox": ("librivox/transcription", "librivox"),
        "cards": ("cards/cards.transcription", "cards")}
HUMAN = "human"  # the voice name of the recordings themselves
VERSION = 1

_LINE = re.compile(r"^\s*<s>(?P<words>.*)</s>\s*\((?P<id>[^()\s]+)\)\s*$")


def read_transcripts(path: Path) -> list[tuple[str, str]]:
    """A Sphinx transcription file (``<s> words </s> (utterance-id)`` per line) ->
    [(utterance id, words)]. A line in another form is an error naming file and line."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None or not m["words"].split():
            raise ValueError(f"{path}:{n}: not a '<s> words </s> (id)' transcript line")
        out.append((m["id"], " ".join(m["words"].split())))
    return out


def distractor_sentences(limit: int | None = None) -> list[dict]:
    """Every sentence of the WikiSpoken test split's passages (first ``limit``), as
    documents ``{"id": "<passage_id>#<n>", "title", "text"}``."""
    docs = []
    for p in passages("test"):
        for n, sentence in enumerate(sentences(p.text)):
            docs.append({"id": f"{p.passage_id}#{n}", "title": p.title, "text": sentence})
    return docs[:limit] if limit is not None else docs


def build_human_corpus(out: str | Path, voices: tuple[str, ...] = tts.EVALUATION,
                       distractors: int | None = None, data: Path = DATA) -> Corpus:
    """Build (or finish building) the corpus in ``out``: recordings copied in, the same
    sentences spoken by ``voices`` (evaluation voices only: the roles of
    :class:`CorpusConfig` apply), and the documents. Resumable: audio already there is
    kept. A missing data set is an error that says how to install it."""
    root = Path(out)
    CorpusConfig(split="test", passages=1, voices=voices)  # enforces the voice roles
    for name, (transcripts, _) in SETS.items():
        if not (data / transcripts).is_file():
            raise FileNotFoundError(
                f"{data / transcripts}: the {name} recordings are missing; install them with "
                "`apt-get install pocketsphinx-testdata` (`make install` does)")
    config = {"name": "human-speech", "source": "Debian pocketsphinx-testdata",
              "layout": "queries", "split": "test", "voices": [HUMAN, *voices],
              "distractors": distractors, "version": VERSION}
    cfg_file = root / "corpus.json"
    if cfg_file.exists() and json.loads(cfg_file.read_text()) != config:
        raise ValueError(f"{root} holds a human-speech corpus built another way; "
                         "use another directory or delete it")
    (root / "query_audio").mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(json.dumps(config, indent=2) + "\n")

    queries, spoken, jobs = [], [], []
    parsed = [tts.parse_voice(v) for v in voices]
    for kind, (transcripts, folder) in SETS.items():
        for utt, words in read_transcripts(data / transcripts):
            recording = data / folder / f"{utt}.wav"
            audio.duration_s(recording)  # unreadable -> AudioError naming the file
            qid = f"{kind}-{utt}"
            queries.append({"id": qid, "text": words, "kind": kind, "passage_id": qid})
            rel = f"query_audio/{qid}.{HUMAN}.wav"
            if not (root / rel).exists():
                shutil.copyfile(recording, root / rel)
            spoken.append({"id": f"{qid}@{HUMAN}", "text": words, "kind": kind,
                           "passage_id": qid, "voice": HUMAN, "audio": rel})
            for voice in parsed:
                rel = f"query_audio/{qid}.{voice.engine}-{voice.name}.wav"
                if not (root / rel).exists():
                    jobs.append((words, voice, root / rel))
                spoken.append({"id": f"{qid}@{voice.id}", "text": words, "kind": kind,
                               "passage_id": qid, "voice": voice.id, "audio": rel})
    for words, voice, path in jobs:
        tts.synthesize(words, voice, path)
    documents = [{"id": q["id"], "title": "", "text": q["text"]} for q in queries]
    write_jsonl(root / DOCUMENTS, documents + distractor_sentences(distractors))
    write_jsonl(root / "queries.jsonl", queries)
    write_jsonl(root / SPOKEN_QUERIES, spoken)
    write_jsonl(root / "manifest.jsonl", [])
    return load_corpus(root)
