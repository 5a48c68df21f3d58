"""Build a WikiSpoken corpus directory: audio, a manifest and a queries file.

Layout of a corpus directory::

    corpus.json      CorpusConfig: how it was built (split, passages, voices, layout, seed)
    audio/           episodes (ep000.wav, ...) or one file per passage
    parts/           one cached utterance per (voice, passage): makes rebuilding resumable
    manifest.jsonl   one line per spoken passage: passage_id, title, split, audio (relative
                     to the corpus dir), start, end (seconds), voice, text (the words spoken)
    queries.jsonl    one line per query: id, text, kind (description|title), passage_id
    documents.jsonl  layout "queries" only (no audio): the passages as text documents,
                     {"id": passage_id, "title", "text"}, ready for ``speechrag index-text``
    spoken_queries.jsonl, query_audio/   optional (``speak_queries``): the same queries
                     spoken, one line each: id, text, kind, passage_id, voice, audio

Deterministic for a given config (seeded), and resumable: utterances and episodes
are written to a temporary name and renamed, and existing ones are reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from speechrag import audio
from speechrag.corpus import tts
from speechrag.corpus.wikispoken import VALIDATION, Passage, passages, queries_for

LAYOUTS = ("episodes", "passages", "queries")  # queries: no passage audio (text targets)
SPOKEN_QUERIES = "spoken_queries.jsonl"
DOCUMENTS = "documents.jsonl"  # layout "queries": {"id": passage_id, "title", "text"}


@dataclass(frozen=True)
class CorpusConfig:
    """Everything that decides a corpus's content."""

    split: str = "test"
    passages: int = 50
    voices: tuple[str, ...] = tts.EVALUATION
    layout: str = "episodes"
    seed: int = 0
    per_episode: int = 10  # passages per long-form episode (~5 minutes)
    pause_s: tuple[float, float] = (1.0, 2.5)  # silence between passages, drawn per gap
    lead_s: float = 0.5  # silence before the first passage of an episode
    version: int = 1

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; one of {LAYOUTS}")
        if self.passages < 1:
            raise ValueError("--passages must be at least 1")
        if not self.voices:
            raise ValueError("at least one voice is needed")
        for v in self.voices:
            role = tts.role_of(v)
            if role == "reserved":
                raise tts.VoiceError(f"{v!r} is a reserved voice: speechrag never uses it")
            if self.split in ("train", VALIDATION) and role != "training":
                raise tts.VoiceError(
                    f"{v!r} is an {role} voice: {self.split} corpora use training voices only "
                    f"({', '.join(tts.TRAINING)})")
            tts.parse_voice(v)  # a malformed spec fails here, before anything is written


@dataclass
class Corpus:
    """A built corpus, as the evaluator reads it."""

    root: Path
    config: dict
    manifest: list[dict] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)
    spoken_queries: list[dict] = field(default_factory=list)  # "audio" is absolute
    documents: list[dict] = field(default_factory=list)  # layout "queries" only

    def audio_files(self) -> list[str]:
        return sorted({str(self.root / m["audio"]) for m in self.manifest})

    def gold(self) -> dict[str, list[dict]]:
        """passage_id -> its spoken occurrences (audio path, start, end, voice)."""
        out: dict[str, list[dict]] = {}
        for m in self.manifest:
            out.setdefault(m["passage_id"], []).append(
                {**m, "audio": str(self.root / m["audio"])})
        return out


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{n}: not valid JSON ({err.msg})") from err
    return rows


def load_corpus(root: str | Path) -> Corpus:
    root = Path(root)
    for name in ("corpus.json", "manifest.jsonl", "queries.jsonl"):
        if not (root / name).is_file():
            raise ValueError(f"{root}: not a WikiSpoken corpus (no {name}); "
                             "build one with `speechrag corpus build`")
    spoken = root / SPOKEN_QUERIES
    return Corpus(root, json.loads((root / "corpus.json").read_text()),
                  _read_jsonl(root / "manifest.jsonl"), _read_jsonl(root / "queries.jsonl"),
                  [{**q, "audio": str(root / q["audio"])} for q in _read_jsonl(spoken)]
                  if spoken.is_file() else [],
                  _read_jsonl(root / DOCUMENTS) if (root / DOCUMENTS).is_file() else [])


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Rows as JSON lines, written to a temporary name and renamed (atomic)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def choose_passages(config: CorpusConfig) -> list[Passage]:
    """The first ``config.passages`` passages of the split in a seeded pseudo-random order."""
    pool = passages(config.split)
    if config.passages > len(pool):
        raise ValueError(f"--passages {config.passages}: the {config.split} split has "
                         f"only {len(pool)}")

    def order(p: Passage) -> str:
        return hashlib.sha1(f"{config.seed}:{p.title}".encode()).hexdigest()

    return sorted(pool, key=order)[:config.passages]


def _part(root: Path, voice: tts.Voice, p: Passage) -> Path:
    slug = voice.id.replace(":", "_").replace("+", "-")
    return root / "parts" / slug / f"{p.passage_id}.wav"


def default_workers() -> int:
    """TTS processes to run at once: one per CPU core."""
    return os.cpu_count() or 1


def _synthesize_all(jobs: list[tuple[str, tts.Voice, Path]], workers: int,
                    on_progress: Callable[[int, int], None] | None) -> None:
    """Speak every (text, voice, path) not on disk yet, ``workers`` at a time, calling
    on_progress(done, len(jobs)) as each is ready. Each utterance depends only on its text
    and voice, so the corpus is the same whatever the number of workers. Threads suffice:
    each one waits on a TTS process."""
    todo = [job for job in jobs if not job[2].exists()]
    done = len(jobs) - len(todo)
    if on_progress and done:  # a resumed build starts where the last one stopped
        on_progress(done, len(jobs))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(tts.synthesize, *job) for job in todo]
        try:
            for future in futures:
                future.result()
                done += 1
                if on_progress:
                    on_progress(done, len(jobs))
        except BaseException:  # a failing voice fails fast: nothing more is started
            for future in futures:
                future.cancel()
            raise


def build_corpus(config: CorpusConfig, out: str | Path,
                 on_progress: Callable[[int, int], None] | None = None,
                 workers: int = 1) -> Corpus:
    """Build (or finish building) the corpus ``config`` describes in ``out``, speaking
    ``workers`` passages at a time (the result does not depend on it).

    on_progress(done, total) is called after each passage is synthesized.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    cfg_file = root / "corpus.json"
    cfg = {**asdict(config), "voices": list(config.voices), "pause_s": list(config.pause_s)}
    if cfg_file.exists() and json.loads(cfg_file.read_text()) != cfg:
        raise ValueError(f"{root}: already holds a corpus built with another config; "
                         "use a new --out")
    cfg_file.write_text(json.dumps(cfg, indent=2) + "\n")
    for engine in {v.partition(":")[0] for v in config.voices}:
        tts.check_engine(engine)

    chosen = choose_passages(config)
    rng = random.Random(config.seed)
    if config.layout == "episodes":
        groups = [chosen[i:i + config.per_episode]
                  for i in range(0, len(chosen), config.per_episode)]
    elif config.layout == "passages":
        groups = [[p] for p in chosen]
    else:  # queries only: the passages are the (text) documents, nothing is spoken
        groups = []
    # Draw every random choice up front, in a fixed order, so a resumed build decides alike.
    plan = []
    for g, group in enumerate(groups):
        voice = tts.parse_voice(config.voices[g % len(config.voices)], rng)
        pauses = [rng.uniform(*config.pause_s) for _ in group]
        name = f"ep{g:03d}.wav" if config.layout == "episodes" else f"{group[0].passage_id}.wav"
        plan.append((name, voice, group, pauses))

    _synthesize_all([(p.text, voice, _part(root, voice, p)) for _, voice, group, _ in plan
                     for p in group], workers, on_progress)
    manifest: list[dict] = []
    for name, voice, group, pauses in plan:
        lengths = [sf.info(str(_part(root, voice, p))).frames / audio.SAMPLE_RATE
                   for p in group]
        target = root / "audio" / name
        lead = config.lead_s if config.layout == "episodes" else 0.0
        t = lead
        for p, length, pause in zip(group, lengths, pauses, strict=True):
            manifest.append({"passage_id": p.passage_id, "title": p.title, "split": p.split,
                             "audio": f"audio/{name}", "start": round(t, 3),
                             "end": round(t + length, 3), "voice": voice.id, "text": p.text})
            t += length + (pause if config.layout == "episodes" else 0.0)
        if not target.exists():
            _assemble(root, target, voice, group, pauses, lead)
    queries = [q for p in chosen for q in queries_for(p)]
    if config.layout == "queries":  # the written passages are what queries retrieve
        write_jsonl(root / DOCUMENTS, [{"id": p.passage_id, "title": p.title, "text": p.text}
                                        for p in chosen])
    write_jsonl(root / "manifest.jsonl", manifest)
    write_jsonl(root / "queries.jsonl", queries)
    return load_corpus(root)


def _assemble(root: Path, target: Path, voice: tts.Voice, group: list[Passage],
              pauses: list[float], lead_s: float) -> None:
    """Concatenate cached utterances with silences into one recording (atomic rename)."""
    pieces = [np.zeros(round(lead_s * audio.SAMPLE_RATE), dtype=np.float32)]
    for i, p in enumerate(group):
        pieces.append(audio.load(_part(root, voice, p)))
        if len(group) > 1 and i < len(group) - 1:
            pieces.append(np.zeros(round(pauses[i] * audio.SAMPLE_RATE), dtype=np.float32))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.wav")
    sf.write(str(tmp), np.concatenate(pieces), audio.SAMPLE_RATE, subtype="PCM_16")
    tmp.replace(target)


def speak_queries(root: str | Path, voices: tuple[str, ...] | None = None,
                  kinds: tuple[str, ...] = ("description", "title"),
                  on_progress: Callable[[int, int], None] | None = None,
                  workers: int = 1) -> Corpus:
    """Speak a built corpus's queries: ``query_audio/<id>.wav`` and
    ``spoken_queries.jsonl``. Each query gets one voice, alternating over ``voices``
    (default: the evaluation voices of a dev/test corpus, the corpus's own voices of a
    train or validation corpus); the voice roles of :class:`CorpusConfig` apply.
    Resumable; ``workers`` queries are spoken at a time."""
    root = Path(root)
    corpus = load_corpus(root)
    split = corpus.config.get("split")
    own = tuple(corpus.config.get("voices") or tts.TRAINING)
    voices = voices or (own if split in ("train", VALIDATION) else tts.EVALUATION)
    CorpusConfig(split=split, passages=1, voices=voices)  # enforces the voice roles
    for engine in {v.partition(":")[0] for v in voices}:
        tts.check_engine(engine)
    chosen = [q for q in corpus.queries if q["kind"] in kinds]
    rows, jobs = [], []
    for q in chosen:
        spec = voices[int(hashlib.sha1(q["id"].encode()).hexdigest()[:8], 16) % len(voices)]
        # a shifted speaker is drawn per query; espeak-ng's draw stays the one it always was
        # (seed 0), so the spoken questions of corpora built before stay the same
        voice = tts.parse_voice(spec, random.Random(q["id"]) if spec.endswith(":shift")
                                else None)
        rel = f"query_audio/{q['id']}.wav"
        jobs.append((q["text"], voice, root / rel))
        rows.append({**q, "voice": voice.id, "audio": rel})
    _synthesize_all(jobs, workers, on_progress)
    write_jsonl(root / SPOKEN_QUERIES, rows)
    return load_corpus(root)
