"""How fast do Whisper's frozen states learn to spell MiniLM's tokens under CTC alone?

A CPU probe for CLSR's alignment lever (issue 3, section 5: "supervising the CIF
alignment (a CTC loss on the encoder projection)"). CLSR's stage 1 must learn *where*
each token is (CIF) and *which* it is (decoder) at once, and on 2 CPU cores it was
still emitting the commonest words after 300 steps (WER 86%). This trains only a CTC
head on the same cached states, the same vocabulary and the same output layer shape
as CLSR's CTC branch (``ctc_weight``: states -> Linear -> groups of 3 averaged ->
tied output over MiniLM's word embeddings + a blank), optionally with a few
Transformer layers in between, for a fixed wall-clock budget, and scores greedy CTC
transcripts of held-out train passages: WER, and retrieval with MiniLM on them
(written questions -> transcript), the columns ``validate.py`` gives a CLSR checkpoint.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ctc_probe.py \\
        --corpus wikispoken-train-600 --val-corpus wikispoken-train-8037 \\
        --features runs/features --layers 0 --minutes 60 --out runs/ctc-linear
    .venv/bin/python benchmarks/ctc_probe.py plot runs/ctc-linear --clsr runs/probe-random \
        --out curves.png

Train utterances come from ``--corpus`` (train split, training voices: the training
app's own loader refuses anything else), minus every passage the training app holds
out; validation is the held-out passages of ``--val-corpus`` (a bigger build of the
same split holds out a superset), so no validation passage is ever trained on. A probe,
not a model: nothing here ships.

Shapes: B utterances, S states (50/s), S' = ceil(S / 3), D head width, E MiniLM
width, V' kept vocabulary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from speechrag.corpus.build import load_corpus
from speechrag.metrics import wer
from speechrag.models.losses import IGNORE
from speechrag.models.speech_states import states_policy
from speechrag.models.text_encoder import TextEncoder
from speechrag.train.data import (
    Batches,
    Utterance,
    cache_states,
    cap_validation,
    held_out,
    train_vocabulary,
    training_utterances,
)


class CtcHead(nn.Module):
    """Whisper states (B, S, D_enc) -> CTC log-probabilities (B, S', 1 + V'), blank = 0.

    The output layer is CLSR's: a map to MiniLM's word space, then the frozen word
    embeddings of the kept vocabulary (V', E), plus a bias; the blank has its own logit.
    """

    def __init__(self, d_encoder: int, d: int, layers: int, words: torch.Tensor,
                 stride: int = 3) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Linear(d_encoder, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, 0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers) if layers else None
        self.norm = nn.LayerNorm(d)
        self.to_word_space = nn.Linear(d, words.shape[1])
        self.register_buffer("words", words.detach().clone())
        self.bias = nn.Parameter(torch.zeros(words.shape[0]))
        self.blank = nn.Linear(d, 1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> log-probs (B, S', 1 + V') and the pooled mask (B, S')."""
        h = self.proj(states) * mask[..., None]
        k = self.stride
        pad = (-h.shape[1]) % k
        h = F.pad(h, (0, 0, 0, pad))
        m = F.pad(mask, (0, pad)).to(h.dtype)
        b, s, d = h.shape
        count = m.view(b, s // k, k).sum(2)
        h = h.view(b, s // k, k, d).sum(2) / count.clamp(min=1)[..., None]
        mask = count > 0
        if self.layers is not None:
            h = self.layers(h, src_key_padding_mask=~mask)
        h = self.norm(h)
        logits = torch.cat([self.blank(h), self.to_word_space(h) @ self.words.T + self.bias], -1)
        return F.log_softmax(logits.float(), dim=-1), mask


def greedy(log_probs: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """(B, S', 1 + V') -> per utterance the local token ids: best class per state,
    repeats merged, blanks dropped."""
    out = []
    for best, real in zip(log_probs.argmax(-1), mask, strict=True):
        best = best[real]
        keep = torch.ones_like(best, dtype=torch.bool)
        keep[1:] = best[1:] != best[:-1]
        out.append([int(c) - 1 for c in best[keep & (best > 0)]])
    return out


@torch.no_grad()
def evaluate(head: CtcHead, val: list[Utterance], cache: Path, text: TextEncoder,
             vocab: torch.Tensor, questions: dict[str, list[str]]) -> dict[str, float]:
    """Greedy transcripts of the held-out passages -> WER %, written R@1 % (questions ->
    MiniLM of the transcripts) and transcript R@1 % (true text -> decoded text)."""
    head.eval()
    tok = text.model.tokenizer
    decoded = []
    for u in val:
        states = torch.load(cache / f"{u.key}.pt", weights_only=True).float()[None]
        lp, mask = head(states, torch.ones(states.shape[:2], dtype=torch.bool))
        decoded.append(tok.decode(vocab[greedy(lp, mask)[0]].tolist(),
                                  skip_special_tokens=True))
    head.train()
    s = torch.from_numpy(text.encode(decoded))
    t = torch.from_numpy(text.encode([u.text for u in val]))
    asked = [(q, i) for i, u in enumerate(val) for q in questions.get(u.passage_id, [])]
    q = torch.from_numpy(text.encode([x for x, _ in asked]))

    def r1(scores: torch.Tensor, truth: torch.Tensor) -> float:
        return 100 * float((scores.argmax(1) == truth).float().mean())

    return {"wer": 100 * wer([u.text for u in val], decoded),
            "written_r1": r1(q @ s.T, torch.tensor([i for _, i in asked])),
            "transcript_r1": r1(t @ s.T, torch.arange(len(val))),
            "questions": len(asked), "passages": len(val), "example": decoded[0][:300]}


def plot(runs: list[Path], clsr: list[Path], out: Path) -> None:
    """WER and written R@1 against CPU minutes of training: CTC probe runs (their
    periodic scores on the first held-out passages, then all of them at the end) beside
    CLSR runs' own validation (``log.jsonl`` of ``speechrag train``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        rows = [r for r in rows if "wer" in r]
        part = [r for r in rows if r["passages"] == rows[0]["passages"]]
        whole = [r for r in rows if r not in part]  # the final score on every passage
        for ax, key in ((a, "wer"), (b, "written_r1")):
            line, = ax.plot([r["train_seconds"] / 60 for r in part], [r[key] for r in part],
                            "o-", label=f"CTC {run.name}")
            ax.plot([r["train_seconds"] / 60 for r in whole], [r[key] for r in whole], "*",
                    markersize=14, color=line.get_color())
    for run in clsr:
        rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        rows = [r for r in rows if "val_wer" in r]
        t = [r["seconds"] / 60 for r in rows]
        a.plot(t, [100 * r["val_wer"] for r in rows], "s--", label=f"CLSR {run.name}")
        b.plot(t, [100 * r["val_r1"] for r in rows], "s--", label=f"CLSR {run.name}")
    a.set_ylim(0, 150)
    a.set_ylabel("WER % (free-running / greedy)")
    b.set_ylabel("written question R@1 %")
    for ax in (a, b):
        ax.set_xlabel("CPU minutes of training (one thread)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("held-out train passages: CTC on 60 (circles) and all of them (stars), "
                 "CLSR on 24 (its run's own validation, minutes include it)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["plot"]:
        pp = argparse.ArgumentParser(prog="ctc_probe.py plot")
        pp.add_argument("runs", nargs="+", type=Path, help="CTC probe --out directories")
        pp.add_argument("--clsr", nargs="*", type=Path, default=[], help="CLSR run directories")
        pp.add_argument("--out", type=Path, required=True, help="PNG to write")
        a = pp.parse_args(argv[1:])
        plot(a.runs, a.clsr, a.out)
        return
    ap.add_argument("--corpus", type=Path, required=True, help="train corpus to learn from")
    ap.add_argument("--val-corpus", type=Path, required=True,
                    help="train corpus whose held-out passages are scored")
    ap.add_argument("--features", type=Path, required=True, help="the runs' state cache")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=0, help="Transformer layers in the head")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--minutes", type=float, default=60.0, help="training wall-clock budget")
    ap.add_argument("--eval-minutes", type=float, default=15.0,
                    help="score on --eval-passages this often")
    ap.add_argument("--eval-passages", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stride", type=int, default=3, help="states averaged per CTC frame")
    ap.add_argument("--min-count", type=int, default=2,
                    help="vocabulary: tokens seen this often in the train split (CLSR's 2)")
    ap.add_argument("--cached-only", action="store_true",
                    help="train on the --corpus utterances already cached (spoken queries too)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    text = TextEncoder()
    train_corpus = load_corpus(args.corpus)
    train, _ = held_out(training_utterances(train_corpus), 0.04)
    val_corpus = load_corpus(args.val_corpus)
    _, val = held_out(training_utterances(val_corpus), 0.04)
    val = [u for u in cap_validation(val, 1000) if u.kind == "passage"]
    overlap = {u.passage_id for u in train} & {u.passage_id for u in val}
    assert not overlap, f"{len(overlap)} validation passages in training"
    questions: dict[str, list[str]] = {}
    for q in val_corpus.queries:
        questions.setdefault(q["passage_id"], []).append(q["text"])
    if args.cached_only:  # train on what an earlier run cached, encode nothing new
        cache = args.features / states_policy("whisper-base")
        train = [u for u in train if (cache / f"{u.key}.pt").exists()]
    cache = cache_states(train + val, "whisper-base", args.features)

    vocab = train_vocabulary(text, args.min_count)
    unk = text.model.tokenizer.unk_token_id
    vocab = torch.unique(torch.cat([vocab, torch.tensor([unk])]))
    to_local = torch.full((text.word_embeddings.shape[0],), int((vocab == unk).nonzero()))
    to_local[vocab] = torch.arange(len(vocab))
    head = CtcHead(512, args.width, args.layers, text.word_embeddings.detach()[vocab],
                   args.stride)
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=args.lr)
    asked: dict[str, list[str]] = {}  # Batches pairs each passage with a question
    for q in train_corpus.queries:
        asked.setdefault(q["passage_id"], []).append(q["text"])
    batches = Batches(train, asked, text, cache, args.batch, args.seed, query_fraction=0.0)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.jsonl"
    log.write_text("")
    print(f"{len(train)} train utterances, {len(val)} held-out passages, {len(vocab)} tokens; head "
          f"{sum(p.numel() for p in head.parameters() if p.requires_grad) / 1e6:.1f}M params")

    start = time.monotonic()
    trained = 0.0  # seconds spent training (evaluations excluded)
    next_eval = args.eval_minutes * 60
    step = 0
    while True:
        t0 = time.monotonic()
        b = batches.batch(step)
        lp, mask = head(b["states"].float(), b["state_mask"])
        targets = b["targets"]
        real = targets != IGNORE
        local = to_local[targets.clamp(min=0)] + 1
        loss = F.ctc_loss(lp.transpose(0, 1), local.masked_fill(~real, 0), mask.sum(1),
                          real.sum(1), blank=0, zero_infinity=True)
        warm = min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = args.lr * warm
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        step += 1
        trained += time.monotonic() - t0
        row: dict = {"step": step, "loss": loss.item(), "train_seconds": round(trained, 1)}
        final = trained >= args.minutes * 60
        if trained >= next_eval or final:
            subset = val if final else val[: args.eval_passages]
            row.update(evaluate(head, subset, cache, text, vocab, questions))
            next_eval += args.eval_minutes * 60
            print(json.dumps(row), flush=True)
        elif step % 20 == 0:
            print(f"step {step} loss {float(loss):.3f} {trained:.0f}s", flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if final:
            break
    torch.save(head.state_dict(), args.out / "head.pt")
    print(f"done: {step} steps, {trained / 60:.1f} min training, "
          f"{(time.monotonic() - start) / 60:.1f} min in all")


if __name__ == "__main__":
    main()
