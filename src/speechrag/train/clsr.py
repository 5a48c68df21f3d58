"""Train CLSR: ``speechrag train --arch clsr --corpus DIR [--config FILE] [--out DIR]``.

Stage 1 is ASR pretraining of the projection, CIF and decoder on frozen, cached
Whisper states ((1 - a) CE + a MAE); stage 2 adds the contrastive loss against the
passage's questions (both query kinds) through the frozen text encoder (CLSR's
L_total). Validation runs on train-split passages held out by hash (never dev or
test), spoken by the training voices.

``out/`` holds ``features/`` (cached states), ``last.pt`` (model, optimizer, step:
resume from it), ``model.pt`` (trained weights only: what ships), ``log.jsonl`` (one
line per logged step) and ``curves.png``. Seeded; uses a GPU when one is present.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechrag.corpus.build import load_corpus
from speechrag.metrics import wer
from speechrag.models.clsr import ClsrConfig, ClsrModel, strict_config
from speechrag.text_encoder import TextEncoder
from speechrag.train.data import (
    Batches,
    cache_states,
    held_out,
    train_vocabulary,
    training_utterances,
)


@dataclass(frozen=True)
class TrainConfig:
    model: ClsrConfig = field(default_factory=ClsrConfig)
    stage1_steps: int = 2000
    stage2_steps: int = 2000
    batch_size: int = 16
    lr: float = 5e-4
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 200
    val_fraction: float = 0.05
    max_val: int = 64  # validation utterances scored
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        values = dict(values)
        if isinstance(values.get("model"), dict):
            values["model"] = ClsrConfig.from_dict(values["model"])
        return strict_config(cls, values, "train config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% over both stages."""
    total = config.stage1_steps + config.stage2_steps
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def validate(model: ClsrModel, batches: Batches, val: list, device: torch.device) -> dict:
    """Free-running WER (CIF counts tokens itself) and query -> utterance R@1 on val."""
    model.eval()
    tok = model.text.model.tokenizer
    hyps, vecs, queries = [], [], []
    for i in range(0, len(val), batches.batch_size):
        chunk = val[i:i + batches.batch_size]
        b = {k: v.to(device) for k, v in batches.collate(chunk).items()}
        out = model(b["states"], b["state_mask"])
        hyps += [tok.decode(ids[:n].tolist(), skip_special_tokens=True)
                 for ids, n in zip(out["token_ids"], out["n_tokens"], strict=True)]
        vecs.append(out["speech_emb"])
        queries.append(model.text.encode_embeddings(
            model.text.word_embeddings[b["query_ids"]], b["query_lengths"]))
    speech, q = torch.cat(vecs), torch.cat(queries)
    r1 = float((torch.argmax(q @ speech.T, dim=1) == torch.arange(len(q), device=device))
               .float().mean())
    model.train()
    return {"val_wer": wer([u.text for u in val], hyps), "val_r1": r1, "val_n": len(val),
            "val_example": hyps[0][:200] if hyps else ""}


def plot_curves(log: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in log if "loss" in r]
    for key in ("loss", "ce", "cif_ce", "mae", "nll"):
        if any(key in r for r in log):
            a.plot(steps, [r.get(key, float("nan")) for r in log if "loss" in r], label=key)
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_title("training losses")
    a.legend()
    val = [r for r in log if "val_wer" in r]
    b.plot([r["step"] for r in val], [100 * r["val_wer"] for r in val], "o-", label="WER %")
    b.plot([r["step"] for r in val], [100 * r["val_r1"] for r in val], "s-",
           label="query R@1 %")
    b.set_xlabel("step")
    b.set_title("validation (held-out train passages)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    """Train (or resume) and return the path of the shippable ``model.pt``."""
    ap = argparse.ArgumentParser(prog="speechrag train --arch clsr", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="a train-split corpus")
    ap.add_argument("--config", type=Path, help="JSON with TrainConfig keys")
    ap.add_argument("--out", type=Path, default=Path("runs/clsr"),
                    help="run directory (features, checkpoints, log, curves)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    config = TrainConfig.from_dict(json.loads(args.config.read_text()) if args.config else {})
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *_: None) if args.quiet else print

    corpus = load_corpus(args.corpus)
    train, val = held_out(training_utterances(corpus), config.val_fraction)
    val = val[:config.max_val]
    queries: dict[str, list[str]] = {}
    for q in corpus.queries:
        queries.setdefault(q["passage_id"], []).append(q["text"])
    say(f"{len(train)} training and {len(val)} validation utterances; caching Whisper states")
    cache_states(train + val, config.model.whisper, out / "features",
                 on_progress=None if args.quiet else
                 lambda i, n: print(f"\rencoded {i}/{n}", end="" if i < n else "\n"))

    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = TextEncoder(config.model.text_encoder)
    vocab = train_vocabulary(text, config.model.vocab_min_count)
    model = ClsrModel(config.model, text, vocab).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    step, log = 0, []
    last = out / "last.pt"
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=True)
        if state["train_config"] != config.to_dict():
            raise ValueError(f"{last}: was trained with another config; use a new --out")
        model.load_state_dict(state["state"], strict=False)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        say(f"resumed at step {step}")
    batches = Batches(train, queries, text, out / "features", config.batch_size, config.seed)
    total = config.stage1_steps + config.stage2_steps
    t0 = time.perf_counter()
    while step < total:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        b = {k: v.to(device) for k, v in batches.batch(step).items()}
        parts = model.training_loss(**b, contrastive=step >= config.stage1_steps)
        opt.zero_grad()
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        step += 1
        row = {"step": step, "stage": 1 if step <= config.stage1_steps else 2,
               **{k: float(v.detach()) for k, v in parts.items()},
               "lr": lr_at(step - 1, config), "seconds": time.perf_counter() - t0}
        if step % config.eval_every == 0 or step == total:
            if val:
                row |= validate(model, batches, val, device)
            log.append(row)
            model.save(out / "model.pt", extra={"step": step})
            torch.save({"state": model.trained_state_dict(), "optimizer": opt.state_dict(),
                        "step": step, "train_config": config.to_dict()}, last.with_suffix(".tmp"))
            last.with_suffix(".tmp").replace(last)
            (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
            plot_curves(log, out / "curves.png")
            say(f"step {step}/{total} loss {row['loss']:.3f} acc {row['token_acc']:.2f}"
                + (f" val WER {row['val_wer']:.2f} R@1 {row['val_r1']:.2f}" if val else ""))
        elif step % 10 == 0:
            log.append(row)
    return out / "model.pt"
