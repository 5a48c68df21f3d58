"""Does a better CTC decoder help CLSR retrieve? Greedy path against prefix beam search,
alone and with a token n-gram language model (shallow fusion), N-best averaging of the
speech embedding, and the greedy path with the blank made less likely (a blank penalty,
against deletions), all on one checkpoint's held-out validation passages.

    .venv/bin/python benchmarks/ctc_decoding.py --corpus TRAIN_CORPUS --features FEATURES \\
        [--checkpoint src/speechrag/trained/clsr.pt] [--max-val 1000] [--order 3] \\
        [--blank-penalty 0.5 1 ...] [--fusion ALPHA:BETA ...]

The language model is counted over the same train corpus's passage texts with the
held-out passages taken out (so nothing it scores was in its counts), over the
checkpoint's own output vocabulary (rare tokens spelled as in training). Every decoded
token sequence goes through the frozen text encoder as the retriever's would; the table
gives written-question R@1 and MRR over the passages and the WER of the decoded text.

Written here rather than taken from a library: pyctcdecode and flashlight-text decode
with a KenLM model, and building one needs KenLM's C++ ``lmplz``, which no wheel ships;
the question is whether an LM pays at all, which a small counted model answers.
Shapes: T states, C = 1 + V' classes (class 0 the blank, local token i is class i + 1).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from speechrag.corpus.build import load_corpus
from speechrag.metrics import mrr, ranks_of_truth, recall_at, wer
from speechrag.models.clsr import ClsrModel
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.vocab import respell, spelling_table
from speechrag.retrievers import TRAINED_DIR
from speechrag.train.data import cache_states, cap_validation, held_out, training_utterances

NEG = -1e30  # log of zero, kept finite so sums stay ordered


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b <= NEG else a + math.log1p(math.exp(b - a))


class NgramLM:
    """A token n-gram model with interpolated absolute discounting (Ney et al. 1994):
    p(w | h) = max(c(h w) - d, 0) / c(h) + d * types(h) / c(h) * p(w | h'), down to an
    add-half unigram over ``vocab`` tokens, so every token has a probability and the
    distribution over the vocabulary sums to one for every history."""

    def __init__(self, sentences: Sequence[Sequence[int]], vocab: int, order: int = 3,
                 discount: float = 0.75) -> None:
        """sentences: token id lists (ids in [0, vocab)); each starts after ``order - 1``
        start symbols (id ``vocab``)."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.vocab, self.order, self.d = vocab, order, discount
        self.start = vocab
        self.counts: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order + 1)]
        for ids in sentences:
            seq = [self.start] * (order - 1) + list(ids)
            for i in range(order - 1, len(seq)):
                for n in range(1, order + 1):
                    self.counts[n][tuple(seq[i - n + 1:i + 1])] += 1
        self.total: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order + 1)]
        self.types: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order + 1)]
        for n in range(2, order + 1):
            for gram, c in self.counts[n].items():
                self.total[n][gram[:-1]] += c
                self.types[n][gram[:-1]] += 1
        self.n_tokens = sum(self.counts[1].values())
        self._memo: dict[tuple[tuple[int, ...], int], float] = {}

    def history(self, prefix: Sequence[int]) -> tuple[int, ...]:
        """The last ``order - 1`` tokens of a prefix, start symbols before its first."""
        if self.order == 1:
            return ()
        return tuple(([self.start] * (self.order - 1) + list(prefix))[-(self.order - 1):])

    def logp(self, history: tuple[int, ...], w: int) -> float:
        """Natural log of p(w | history); history as :meth:`history` gives it."""
        key = (history, w)
        if key not in self._memo:
            p = (self.counts[1].get((w,), 0) + 0.5) / (self.n_tokens + 0.5 * self.vocab)
            for n in range(2, self.order + 1):
                h = history[len(history) - (n - 1):]
                total = self.total[n].get(h, 0)
                if total:
                    c = self.counts[n].get(h + (w,), 0)
                    p = max(c - self.d, 0) / total + self.d * self.types[n][h] / total * p
            self._memo[key] = math.log(p)
        return self._memo[key]


def prefix_beam_search(log_probs: torch.Tensor, beam: int = 8, lm: NgramLM | None = None,
                       alpha: float = 0.0, beta: float = 0.0, top_k: int = 6,
                       floor: float = -8.0) -> list[tuple[list[int], float]]:
    """CTC prefix beam search: log_probs (T, C) -> up to ``beam`` (local token ids, score),
    best first. A prefix's score is log p_ctc(prefix) + alpha * log p_lm(prefix) +
    beta * len(prefix); per state only the ``top_k`` classes above ``floor`` extend a
    prefix (the blank and repeats are always scored)."""
    vals, idx = log_probs.float().topk(min(top_k, log_probs.shape[1]), dim=-1)
    vals_l, idx_l, blank = vals.tolist(), idx.tolist(), log_probs[:, 0].tolist()
    # prefix -> [log p(ends in blank), log p(ends in its last token), LM + length score]
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG, 0.0]}

    def extra(prefix: tuple[int, ...], w: int) -> float:
        return (alpha * lm.logp(lm.history(prefix), w) if lm is not None else 0.0) + beta

    for t in range(log_probs.shape[0]):
        nxt: defaultdict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG, NEG, 0.0])
        tokens = [(c - 1, v) for c, v in zip(idx_l[t], vals_l[t], strict=True)
                  if c != 0 and v > floor]
        for prefix, (pb, pnb, bonus) in beams.items():
            both = _logaddexp(pb, pnb)
            here = nxt[prefix]
            here[2] = bonus
            here[0] = _logaddexp(here[0], both + blank[t])
            last = prefix[-1] if prefix else None
            if last is not None:  # the last token held over this state
                v = log_probs[t, last + 1].item()
                here[1] = _logaddexp(here[1], pnb + v)
            for w, v in tokens:
                if w == last:  # a repeat is a new token only after a blank
                    if pb <= NEG:
                        continue
                    source = pb
                else:
                    source = both
                longer = prefix + (w,)
                entry = nxt[longer]
                entry[2] = bonus + extra(prefix, w)
                entry[1] = _logaddexp(entry[1], source + v)
        ranked = sorted(nxt.items(), key=lambda kv: -(_logaddexp(kv[1][0], kv[1][1]) + kv[1][2]))
        beams = dict(ranked[:beam])
    return [(list(p), _logaddexp(s[0], s[1]) + s[2]) for p, s in
            sorted(beams.items(), key=lambda kv: -(_logaddexp(kv[1][0], kv[1][1]) + kv[1][2]))]


def greedy_path(log_probs: torch.Tensor) -> list[int]:
    """(T, C) -> local token ids of the best path, runs merged, blanks dropped."""
    out, prev = [], 0
    for c in log_probs.argmax(-1).tolist():
        if c != 0 and c != prev:
            out.append(c - 1)
        prev = c
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True, help="a train-split corpus")
    ap.add_argument("--features", type=Path, required=True, help="the runs' state cache")
    ap.add_argument("--checkpoint", type=Path, default=TRAINED_DIR / "clsr.pt")
    ap.add_argument("--val-fraction", type=float, default=0.04)
    ap.add_argument("--max-val", type=int, default=1000)
    ap.add_argument("--order", type=int, default=3, help="n-gram order of the LM")
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--blank-penalty", nargs="*", type=float,
                    default=[0.5, 1.0, 1.5, 2.0, 3.0, 4.0],
                    help="greedy path with the blank's log-probability lowered by these")
    ap.add_argument("--fusion", nargs="*", default=["0.15:1", "0.3:2", "0.3:3", "0.5:3"],
                    help="ALPHA:BETA pairs: LM weight, per-token bonus")
    args = ap.parse_args(argv)

    corpus = load_corpus(args.corpus)
    train, val = held_out(training_utterances(corpus), args.val_fraction)
    val = cap_validation(val, args.max_val)
    passages = [u for u in val if u.kind == "passage"]
    held = {u.passage_id for u in val}
    text = TextEncoder()
    model = ClsrModel.load(args.checkpoint, text).eval()
    if model.ctc is None:
        sys.exit(f"{args.checkpoint}: not a CTC-aligned CLSR checkpoint")
    tok = text.model.tokenizer
    spelling = spelling_table(tok, model.vocab_ids.tolist())
    unk = int(model.to_local[tok.unk_token_id])

    def local_ids(s: str) -> list[int]:
        return [int(model.to_local[i])
                for i in respell(tok(s, add_special_tokens=False).input_ids, spelling)]

    t0 = time.perf_counter()
    lm_texts = sorted({u.text for u in train if u.kind == "passage" and u.passage_id not in held})
    lm = NgramLM([local_ids(s) for s in lm_texts], len(model.vocab_ids), args.order)
    print(f"LM: order {args.order}, {len(lm_texts)} train passage texts, {lm.n_tokens} tokens, "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)

    cache = cache_states(val, model.config.whisper, args.features,
                         trained_top=model.config.encoder_layers)
    frames = []
    with torch.no_grad():
        for u in passages:
            states = torch.load(cache / f"{u.key}.pt", weights_only=True).float()[None]
            logits, _ = model.ctc_frames(states, torch.ones(states.shape[:2], dtype=torch.bool))
            frames.append(F.log_softmax(logits[0].float(), dim=-1))
    where = {u.passage_id: i for i, u in enumerate(passages)}
    asked = [(q["text"], where[q["passage_id"]]) for q in corpus.queries
             if q["passage_id"] in where]
    questions = model.encode_text([q for q, _ in asked])
    truth = torch.tensor([i for _, i in asked])
    limit = text.transformer.config.max_position_embeddings - 2

    @torch.no_grad()
    def embed(ids: list[int]) -> torch.Tensor:
        loc = torch.tensor(ids[:limit] or [unk])[None]
        return text.encode_embeddings(model.vq.word_embeddings[loc],
                                      torch.tensor([loc.shape[1]]))[0]

    print("| decoding | written R@1 % | written MRR | WER % | decoding s |")
    print("|---|---|---|---|---|")

    def row(name: str, decoded: list[list[tuple[list[int], float]]], seconds: float,
            n_best: int = 1) -> None:
        embs = []
        for hyps in decoded:
            weights = torch.softmax(torch.tensor([s for _, s in hyps[:n_best]]), 0)
            e = sum(w * embed(ids) for w, (ids, _) in zip(weights, hyps[:n_best], strict=True))
            embs.append(F.normalize(e, dim=0))
        ranks = ranks_of_truth((questions @ torch.stack(embs).T).float().numpy(), truth.tolist())
        r1, m = 100 * recall_at(ranks, 1), mrr(ranks)
        hyp = [tok.decode(model.vocab_ids[torch.tensor(h[0][0], dtype=torch.long)].tolist(),
                          skip_special_tokens=True) for h in decoded]
        w = 100 * wer([u.text for u in passages], hyp)
        print(f"| {name} | {r1:.1f} | {m:.3f} | {w:.1f} | {seconds:.1f} |", flush=True)

    def timed(fn) -> tuple[list[list[tuple[list[int], float]]], float]:  # noqa: ANN001
        t = time.perf_counter()
        out = [fn(f) for f in frames]
        return out, time.perf_counter() - t

    decoded, s = timed(lambda f: [(greedy_path(f), 0.0)])
    row("greedy (shipped)", decoded, s)
    for penalty in args.blank_penalty:
        shift = torch.zeros(frames[0].shape[1])
        shift[0] = penalty
        decoded, s = timed(lambda f, d=shift: [(greedy_path(f - d), 0.0)])
        row(f"greedy, blank penalty {penalty:g}", decoded, s)
    plain, s = timed(lambda f: prefix_beam_search(f, args.beam))
    row(f"beam {args.beam}, no LM", plain, s)
    for k in (2, 4, args.beam):
        row(f"beam {args.beam}, no LM, {k}-best embeddings averaged", plain, s, n_best=k)
    for pair in args.fusion:
        alpha, beta = (float(x) for x in pair.split(":"))
        decoded, s = timed(lambda f, a=alpha, b=beta: prefix_beam_search(f, args.beam, lm, a, b))
        row(f"beam {args.beam} + {args.order}-gram LM, alpha {alpha:g}, beta {beta:g}",
            decoded, s)
    print(f"\n{len(passages)} held-out passages, {len(asked)} written questions "
          f"({args.corpus}, {args.checkpoint})")


if __name__ == "__main__":
    main()
