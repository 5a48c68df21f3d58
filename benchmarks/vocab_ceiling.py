"""What a CLSR output vocabulary costs retrieval before any speech is heard: the
passages' own (gold) transcripts, tokenized as a model with that vocabulary would emit
them, embedded by the text encoder, and searched with the passages' written questions.

    .venv/bin/python benchmarks/vocab_ceiling.py --corpus TRAIN_CORPUS --min-count 2 20 50

For each ``vocab_min_count``: "unk" maps every token outside the kept vocabulary to
[UNK] (what the model does with ``rare_tokens = "unk"``), "spell" writes it with kept
pieces (``rare_tokens = "spell"``, speechrag.models.vocab). "full" is the tokenizer's own
tokens, the ceiling of every variant. The passages are the training app's held-out ones
of a train corpus (never a dev or test passage), so this can pick a vocabulary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from speechrag.corpus.build import load_corpus
from speechrag.metrics import mrr, recall_at
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.vocab import respell, spelling_table
from speechrag.train.data import (
    cap_validation,
    held_out,
    train_vocabulary,
    training_utterances,
)


@torch.no_grad()
def embed(text: TextEncoder, rows: list[list[int]], max_tokens: int = 254) -> torch.Tensor:
    """Token id rows -> (N, dim) embeddings through the word-embedding path the model
    uses (``encode_embeddings``), in batches."""
    table = text.word_embeddings
    out = []
    for i in range(0, len(rows), 32):
        chunk = [r[:max_tokens] or [text.model.tokenizer.unk_token_id] for r in rows[i:i + 32]]
        n = max(len(r) for r in chunk)
        ids = torch.tensor([r + [0] * (n - len(r)) for r in chunk])
        out.append(text.encode_embeddings(table[ids], torch.tensor([len(r) for r in chunk])))
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="a train-split corpus")
    ap.add_argument("--min-count", type=int, nargs="+", default=[2, 20])
    ap.add_argument("--max-val", type=int, default=1000)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--out", type=Path, help="write the table as JSON here")
    args = ap.parse_args()

    corpus = load_corpus(args.corpus)
    _, val = held_out(training_utterances(corpus), args.val_fraction)
    passages = [u for u in cap_validation(val, args.max_val) if u.kind == "passage"]
    where = {u.passage_id: i for i, u in enumerate(passages)}
    questions = [q for q in corpus.queries if q["passage_id"] in where]
    text = TextEncoder("all-MiniLM-L6-v2")
    tok = text.model.tokenizer
    q_emb = torch.from_numpy(text.encode([q["text"] for q in questions]))
    truth = torch.tensor([where[q["passage_id"]] for q in questions])
    kinds = sorted({q["kind"] for q in questions})
    full = text.token_ids([u.text for u in passages])

    def scores(rows: list[list[int]]) -> dict[str, float]:
        s = q_emb @ embed(text, rows).T
        ranks = ((s > s.gather(1, truth[:, None])).sum(1) + 1).tolist()
        out = {}
        for kind in kinds:
            r = [x for x, q in zip(ranks, questions, strict=True) if q["kind"] == kind]
            out[f"{kind} R@1"] = round(100 * recall_at(r, 1), 1)
        out["MRR"] = round(mrr(ranks), 3)
        return out

    rows = [{"vocabulary": "full", "kept": tok.vocab_size, **scores(full)}]
    for m in args.min_count:
        kept = train_vocabulary(text, m).tolist()
        keep = set(kept)
        unk = [[i if i in keep else tok.unk_token_id for i in r] for r in full]
        table = spelling_table(tok, kept)
        spelled = [respell(r, table) for r in full]
        rare = sum(i not in keep for r in full for i in r) / sum(len(r) for r in full)
        grow = sum(map(len, spelled)) / sum(map(len, full))
        rows.append({"vocabulary": f"min {m} unk", "kept": len(kept),
                     "rare tokens %": round(100 * rare, 1), **scores(unk)})
        rows.append({"vocabulary": f"min {m} spell", "kept": len(kept),
                     "tokens x": round(grow, 3), **scores(spelled)})
    print(f"{len(passages)} held-out passages, {len(questions)} written questions")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r.get(k, "")) for k in keys))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
