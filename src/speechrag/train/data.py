"""Training data: WikiSpoken train-split utterances, their cached Whisper states, and
seeded batches.

Two kinds of utterance: a spoken **passage** (aligned with its own transcript and,
in stage 2, retrieved by a written question of that passage) and, when the corpus
has them (``speechrag corpus speak-queries``), a spoken **query** (aligned with its
own words and, in stage 2, paired with its passage's text: the spoken-query ->
text-document direction).

The Whisper encoder is frozen, so its states are computed once per utterance and
kept on disk (fp16, one file each): CPU training then costs only the small trained
parts. A step's batch depends only on (seed, step), so a resumed run sees exactly
the batches the interrupted one would have.

Batch legend: B utterances, S encoder states (50 per second), D encoder width,
N transcript tokens, Q query tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from speechrag import audio
from speechrag.corpus import tts
from speechrag.corpus.build import Corpus, CorpusConfig
from speechrag.corpus.wikispoken import held_out_bucket
from speechrag.models.losses import IGNORE
from speechrag.models.text_encoder import TextEncoder

GPU_UTTERANCES = 64  # utterances per padded encoder pass when caching states on a GPU


@dataclass(frozen=True)
class Utterance:
    key: str  # file name of its cached states
    passage_id: str
    audio: str
    start: float
    end: float
    voice: str
    text: str  # the words spoken
    kind: str = "passage"  # or "query"
    document: str = ""  # a query's passage text: what it should retrieve


def _check_training(corpus: Corpus, split: str, voice: str, what: str) -> None:
    if split != "train" or tts.role_of(voice) != "training":
        raise ValueError(f"{corpus.root}: {what} is {split} / {voice}; "
                         "training takes train passages in training voices only")


def training_utterances(corpus: Corpus) -> list[Utterance]:
    """Every spoken passage of a **train** corpus, then its spoken queries if it has
    them; anything else is refused, so evaluation passages and voices can never reach
    training."""
    if corpus.config.get("split") != "train":
        raise ValueError(f"{corpus.root}: a {corpus.config.get('split')} corpus; training "
                         "uses train-split corpora only")
    out = []
    texts, splits = {}, {}
    rendition = _rendition(corpus)
    for m in corpus.manifest:
        _check_training(corpus, m["split"], m["voice"], m["passage_id"])
        key = hashlib.sha1(f"{rendition}{m['audio']}:{m['start']}".encode()).hexdigest()[:16]
        out.append(Utterance(key, m["passage_id"], str(corpus.root / m["audio"]), m["start"],
                             m["end"], m["voice"], m["text"]))
        texts[m["passage_id"]] = m["text"]
        splits[m["passage_id"]] = m["split"]
    for q in corpus.spoken_queries:
        if q["passage_id"] not in texts:
            raise ValueError(f"{corpus.root}: spoken query {q['id']} has no passage")
        # a spoken query belongs to its passage's split
        _check_training(corpus, splits[q["passage_id"]], q["voice"], f"spoken query {q['id']}")
        # keyed like a passage, by the path inside the corpus, so corpora that share
        # audio (a bigger build of the same seed) share cached states through --features
        rel = os.path.relpath(q["audio"], corpus.root)
        key = hashlib.sha1(f"{rendition}{rel}:0".encode()).hexdigest()[:16]
        out.append(Utterance(key, q["passage_id"], q["audio"], 0.0, audio.duration_s(q["audio"]),
                             q["voice"], q["text"], "query", texts[q["passage_id"]]))
    return out


def _rendition(corpus: Corpus) -> str:
    """What, besides the path inside the corpus, decides an utterance's audio: '' for the
    default train build (seed 0, training voices, one passage per file: its keys are what
    they always were), else a digest of how the corpus was built, all but its size. Two
    renditions of the same passages (other ``--voices``, or ``--seed``) then never share
    a cached state, while a bigger build of one rendition does."""
    built = {k: v for k, v in corpus.config.items() if k != "passages"}
    default = CorpusConfig(split="train", passages=1, layout="passages", voices=tts.TRAINING)
    plain = json.loads(json.dumps({k: v for k, v in asdict(default).items() if k != "passages"}))
    if built == plain:
        return ""
    return hashlib.sha1(json.dumps(built, sort_keys=True).encode()).hexdigest()[:12] + ";"


def training_corpora(corpora: list[Corpus], val_fraction: float
                     ) -> tuple[list[Utterance], list[Utterance], dict[str, list[str]]]:
    """(train, validation, written questions by passage id) of one or more renditions of
    the train split (say, the same passages spoken again in other voices).
    Passages are held out by id in every rendition alike, so no held-out passage is heard
    in training in any voice; validation takes the first corpus's held-out utterances
    alone, so runs on more renditions are scored on the same set as runs on one."""
    train: list[Utterance] = []
    val: list[Utterance] = []
    questions: dict[str, list[str]] = {}
    for i, corpus in enumerate(corpora):
        t, v = held_out(training_utterances(corpus), val_fraction)
        train += t
        if i == 0:
            val = v
        for q in corpus.queries:
            asked = questions.setdefault(q["passage_id"], [])
            if q["text"] not in asked:
                asked.append(q["text"])
    audio_of: dict[str, str] = {}
    for u in train + val:
        if u.key in audio_of:
            if audio_of[u.key] == u.audio:
                raise ValueError(f"{u.audio}: the same corpus is given twice")
            raise ValueError(f"{u.audio} and {audio_of[u.key]}: one passage in two corpora of "
                             "the same build; a second rendition needs other --voices or --seed")
        audio_of[u.key] = u.audio
    return train, val, questions


def train_vocabulary(text: TextEncoder, min_count: int) -> torch.Tensor | None:
    """Sorted tokenizer ids seen at least ``min_count`` times in the WikiSpoken **train**
    split's passage texts (text only: no audio, no dev or test passage), or None (the
    whole vocabulary) when ``min_count`` is 0."""
    if min_count <= 0:
        return None
    from collections import Counter

    from speechrag.corpus.wikispoken import passages

    counts = Counter(i for ids in text.token_ids([p.text for p in passages("train")])
                     for i in ids)
    return torch.tensor(sorted(i for i, n in counts.items() if n >= min_count))


def held_out(utterances: list[Utterance], fraction: float) -> tuple[list[Utterance],
                                                                     list[Utterance]]:
    """(train, validation) by a hash of the passage id: a passage and its spoken
    queries are wholly on one side."""
    val = [u for u in utterances if held_out_bucket(u.passage_id) < fraction]
    return [u for u in utterances if held_out_bucket(u.passage_id) >= fraction], val


def cap_validation(val: list[Utterance], max_passages: int) -> list[Utterance]:
    """The first ``max_passages`` validation passages and the spoken queries of those."""
    passages = [u for u in val if u.kind == "passage"][:max_passages]
    kept = {u.passage_id for u in passages}
    return passages + [u for u in val if u.kind == "query" and u.passage_id in kept]


def cache_states(utterances: list[Utterance], whisper: str, cache: Path,
                 on_progress: Callable[[int, int], None] | None = None,
                 device: str | None = None, batch: int | None = None,
                 trained_top: int = 0, workers: int | None = None) -> Path:
    """Encode every utterance not yet cached, exactly as the retrievers will encode
    speech at search time (:class:`SpeechStates`: 20 s pieces, bf16 where native).
    Returns the directory used: ``cache/<policy>/<key>.pt``, states (S, D) fp16, so
    states made under another policy are never mixed in. Each file is written to a
    temporary name and renamed, so an interrupted run resumes cleanly.

    On a GPU (``device``, default: CUDA when present) ``batch`` utterances (default
    ``GPU_UTTERANCES``) share padded forward passes; on the CPU they go one by one
    unless ``batch`` says otherwise. ``trained_top`` > 0 caches the states below the
    encoder's last blocks, which the model trains (``encoder_layers`` in its config).

    ``workers`` threads (default: up to 8 on a GPU, 1 on the CPU, where the encoder is
    the bottleneck) read the next batch's audio, compute log-mels and write files while
    the encoder runs; the states are the same as with one."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from speechrag.models.speech_states import SpeechStates, states_policy
    from speechrag.segment import Segment

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cache = cache / states_policy(whisper, device=device, trained_top=trained_top)
    cache.mkdir(parents=True, exist_ok=True)
    todo = [u for u in utterances if not (cache / f"{u.key}.pt").exists()]
    if not todo:
        return cache
    workers = workers or (1 if device == "cpu" else min(8, os.cpu_count() or 1))
    step = batch or (1 if device == "cpu" else GPU_UTTERANCES)
    chunks = [todo[i:i + step] for i in range(0, len(todo), step)]

    def segment(u: Utterance) -> Segment:
        return Segment(u.audio, u.start, u.end, read_span(u))

    def save(key: str, states: torch.Tensor) -> None:
        tmp = cache / f"{key}.pt.tmp"
        torch.save(states, tmp)
        tmp.replace(cache / f"{key}.pt")

    with ThreadPoolExecutor(workers) as pool:
        speech = SpeechStates(whisper, device=device, trained_top=trained_top,
                              pool=pool if workers > 1 else None)
        ahead = [pool.submit(segment, u) for u in chunks[0]]
        writes: list[Future] = []  # the previous batch's
        for i, chunk in enumerate(chunks):
            segments = [f.result() for f in ahead]  # a bad file raises here, naming it
            if i + 1 < len(chunks):  # read the next batch while this one is encoded
                ahead = [pool.submit(segment, u) for u in chunks[i + 1]]
            padded, mask = speech.segments(segments)
            for f in writes:
                f.result()  # a failed write stops the run
            writes = [pool.submit(save, u.key, states[: int(real.sum())].to(torch.float16)
                                  .clone())
                      for u, states, real in zip(chunk, padded, mask, strict=True)]
            if on_progress:
                on_progress(min(len(todo), (i + 1) * step), len(todo))
        for f in writes:
            f.result()
    return cache


def read_span(u: Utterance) -> np.ndarray:
    """The utterance's samples (float32 mono at audio.SAMPLE_RATE), cut from its file."""
    samples = audio.load(u.audio)
    return samples[round(u.start * audio.SAMPLE_RATE):round(u.end * audio.SAMPLE_RATE)]


class Batches:
    """Seeded batches of cached states, transcript targets and one paired text per
    utterance: a written question of a passage, the passage text of a spoken query.

    ``query_fraction`` of each batch is spoken queries (when there are any). Every
    utterance of a batch is of a different passage, so no in-batch negative is
    secretly a positive.
    """

    def __init__(self, utterances: list[Utterance], queries: dict[str, list[str]],
                 text: TextEncoder, cache: Path, batch_size: int, seed: int,
                 query_fraction: float = 0.5) -> None:
        self.passages = [u for u in utterances if u.kind == "passage"]
        self.spoken = [u for u in utterances if u.kind == "query"]
        if not self.passages:
            raise ValueError("no training passages")
        self.utterances = utterances
        self.cache = cache
        n_passages = len({u.passage_id for u in utterances})
        self.batch_size = min(batch_size, n_passages)
        # no more spoken queries per batch than passages they cover: a batch's
        # utterances are of distinct passages, so more could never be drawn
        self.n_spoken = min(round(self.batch_size * query_fraction),
                            len({u.passage_id for u in self.spoken}))
        self.seed = seed
        self.text = text
        self.targets = dict(zip([u.key for u in utterances],
                                text.token_ids([u.text for u in utterances]), strict=True))
        texts = sorted({q for qs in queries.values() for q in qs}
                       | {u.document for u in self.spoken})
        self.query_ids = dict(zip(texts, text.token_ids(texts), strict=True))
        self.queries = queries

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The batch of a given step: B utterances of B distinct passages."""
        rng = random.Random(self.seed * 1_000_003 + step)
        chosen: list[Utterance] = []
        seen: set[str] = set()
        for pool, n in ((self.spoken, self.n_spoken),
                        (self.passages, self.batch_size - self.n_spoken)):
            want = len(chosen) + n
            while len(chosen) < want:
                u = pool[rng.randrange(len(pool))]
                if u.passage_id not in seen:
                    seen.add(u.passage_id)
                    chosen.append(u)
        return self.collate(chosen, rng)

    def paired_text(self, u: Utterance, rng: random.Random) -> list[int]:
        """Token ids of what ``u`` is paired with in the contrastive loss."""
        text = u.document if u.kind == "query" else rng.choice(self.queries[u.passage_id])
        if text not in self.query_ids:  # validation texts are tokenized on first use
            self.query_ids[text] = self.text.token_ids([text])[0]
        return self.query_ids[text]

    def collate(self, chosen: list[Utterance], rng: random.Random | None = None
                ) -> dict[str, torch.Tensor]:
        rng = rng or random.Random(0)
        # kept fp16 (as cached) until :func:`to_device`: padding half the bytes on the
        # CPU, and casting on the GPU when there is one
        states = [torch.load(self.cache / f"{u.key}.pt", weights_only=True) for u in chosen]
        padded = torch.nn.utils.rnn.pad_sequence(states, batch_first=True)
        mask = torch.arange(padded.shape[1])[None] < torch.tensor([len(x) for x in states])[:, None]
        for u in chosen:  # validation utterances are tokenized on first use
            if u.key not in self.targets:
                self.targets[u.key] = self.text.token_ids([u.text])[0]
        targets = [self.targets[u.key] for u in chosen]
        queries = [self.paired_text(u, rng) for u in chosen]
        return {"states": padded, "state_mask": mask, "targets": _pad(targets, IGNORE),
                "query_ids": _pad(queries, 0),
                "query_lengths": torch.tensor([len(q) for q in queries])}


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A collated batch on ``device``, states as float32 (they are cached as fp16)."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    out["states"] = out["states"].float()
    return out


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    n = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [value] * (n - len(r)) for r in rows])
