"""A train corpus of a slice of another's passages, to continue a model on passages it
has not seen (a bigger build's tail), sharing the audio and the cached Whisper states.

    .venv/bin/python benchmarks/corpus_slice.py CORPUS OUT --start 4323 [--stop N] \
        [--written-only]

Passages are the manifest's rows [start, stop) in build order: ``corpus build --passages
N`` writes a prefix of the whole build, so a model trained on ``--passages 4323`` never
saw ``--start 4323``'s passages. OUT gets the same corpus.json (so cached states keep
their keys: :func:`speechrag.train.data.training_utterances`), the sliced manifest, the
written and spoken queries of those passages (``--written-only``: no spoken ones, so a
run that does not train on them does not cache their states either), and hard links to
their audio. The held-out passages (a hash of the passage id) are the same ones in both
corpora.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from speechrag.corpus.build import SPOKEN_QUERIES, load_corpus, write_jsonl


def slice_corpus(src: Path, out: Path, start: int, stop: int | None = None,
                 spoken: bool = True) -> int:
    """Write the slice into ``out`` (new or empty), with the spoken queries of its
    passages if ``spoken``; -> the number of passages in it."""
    if start < 0 or (stop is not None and stop < 0):
        raise ValueError(f"{src}: passage positions count from 0 (got [{start}, {stop}))")
    corpus = load_corpus(src)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not empty")
    rows = corpus.manifest[start:stop]
    if not rows:
        raise ValueError(f"{src}: no passages in [{start}, {stop})")
    kept = {m["passage_id"] for m in rows}
    said = [q for q in corpus.spoken_queries if spoken and q["passage_id"] in kept]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "corpus.json", out / "corpus.json")
    files = {m["audio"] for m in rows}
    files |= {os.path.relpath(q["audio"], src) for q in said}
    for rel in sorted(files):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(src / rel, out / rel)
    write_jsonl(out / "manifest.jsonl", rows)
    write_jsonl(out / "queries.jsonl", [q for q in corpus.queries if q["passage_id"] in kept])
    if said:
        write_jsonl(out / SPOKEN_QUERIES, [{**q, "audio": os.path.relpath(q["audio"], src)}
                                           for q in said])
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--start", type=int, required=True)
    ap.add_argument("--stop", type=int)
    ap.add_argument("--written-only", action="store_true",
                    help="leave the spoken queries out")
    args = ap.parse_args(argv)
    n = slice_corpus(args.corpus, args.out, args.start, args.stop, not args.written_only)
    print(f"{args.out}: passages {args.start}..{args.start + n - 1} of {args.corpus}")


if __name__ == "__main__":
    main()
