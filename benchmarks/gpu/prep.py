"""GPU machine, call 1: build the WikiSpoken train corpus with parallel TTS and cache its
Whisper states on the GPU (``/root/sr``, kept while the machine stays warm).

    source benchmarks/gpu/env.sh && python3 benchmarks/gpu/prep.py 6000
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from speechrag.corpus import tts
from speechrag.corpus.build import CorpusConfig, build_corpus, load_corpus, speak_queries
from speechrag.train.data import cache_states, training_utterances


def main(n: int, root: Path = Path("/root/sr")) -> None:
    corpus = root / f"corpus-{n}"
    print("cuda", torch.cuda.is_available(), torch.__version__, flush=True)
    t = time.time()
    config = CorpusConfig(split="train", passages=n, layout="passages", voices=tts.TRAINING)
    c = build_corpus(config, corpus, workers=16)
    hours = sum(m["end"] - m["start"] for m in c.manifest) / 3600
    print(f"built {len(c.manifest)} passages, {hours:.1f} h in {time.time() - t:.0f} s", flush=True)
    t = time.time()
    c = speak_queries(corpus, workers=16)
    print(f"spoke {len(c.spoken_queries)} queries in {time.time() - t:.0f} s", flush=True)
    utts = training_utterances(load_corpus(corpus))
    t = time.time()
    out = cache_states(utts, "whisper-base", root / "features",
                       on_progress=lambda i, k: i % 1024 == 0 and print(f"  {i}/{k}", flush=True))
    print(f"cached {len(utts)} utterances -> {out} in {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
