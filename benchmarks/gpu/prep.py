"""GPU machine, call 1: build the WikiSpoken train corpus with parallel TTS and cache its
Whisper states on the GPU (``/root/sr``, kept while the machine stays warm).

    source benchmarks/gpu/env.sh && python3 benchmarks/gpu/prep.py 6000

``--no-cache`` stops after the speech; ``--no-queries`` speaks no questions (a run
with ``query_fraction`` 0 needs none; 47 s of speaking and their share of caching on
the H100); ``--cache-only --top K`` caches the states below
Whisper's last K blocks (the inputs of a run with ``encoder_layers = K``; 0: the full
encoder). ``--seed S`` speaks another rendition into ``corpus-N-sS``, for a run with
``--corpus`` twice (voice variety). Run the policies one after the other: on the H100
each took about 100 s alone (17,424 utterances), while two processes side by side had
done 3,072 each after about 400 s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from speechrag.corpus import tts
from speechrag.corpus.build import CorpusConfig, build_corpus, load_corpus, speak_queries
from speechrag.train.data import cache_states, training_utterances


def speak(corpus: Path, n: int, seed: int, queries: bool = True) -> None:
    t = time.time()
    config = CorpusConfig(split="train", passages=n, layout="passages", voices=tts.TRAINING,
                          seed=seed)
    c = build_corpus(config, corpus, workers=16)
    hours = sum(m["end"] - m["start"] for m in c.manifest) / 3600
    print(f"built {len(c.manifest)} passages, {hours:.1f} h in {time.time() - t:.0f} s", flush=True)
    if not queries:
        return
    t = time.time()
    c = speak_queries(corpus, workers=16)
    print(f"spoke {len(c.spoken_queries)} queries in {time.time() - t:.0f} s", flush=True)


def cache(corpus: Path, root: Path, top: int) -> None:
    utts = training_utterances(load_corpus(corpus))
    t = time.time()
    out = cache_states(utts, "whisper-base", root / "features", trained_top=top,
                       on_progress=lambda i, k: i % 1024 == 0 and print(
                           f"  top {top}: {i}/{k}", flush=True))
    print(f"cached {len(utts)} utterances -> {out} in {time.time() - t:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("passages", type=int)
    ap.add_argument("--root", type=Path, default=Path("/root/sr"))
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--cache-only", action="store_true")
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--no-queries", action="store_true",
                    help="speak the passages only: no spoken questions to speak or cache "
                         "(runs with query_fraction 0 and no spoken validation)")
    ap.add_argument("--seed", type=int, default=0,
                    help="another rendition of the passages (other voices): corpus-N-sSEED")
    args = ap.parse_args()
    corpus = args.root / (f"corpus-{args.passages}"
                          + (f"-s{args.seed}" if args.seed else ""))
    print("cuda", torch.cuda.is_available(), torch.__version__, flush=True)
    if not args.cache_only:
        speak(corpus, args.passages, args.seed, queries=not args.no_queries)
    if not args.no_cache:
        cache(corpus, args.root, args.top)


if __name__ == "__main__":
    main()
