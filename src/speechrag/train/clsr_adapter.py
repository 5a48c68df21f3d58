"""Train CLSR's document adapter on a trained CLSR:
``speechrag train --arch clsr-adapter --init CLSR.pt --corpus DIR [--corpus DIR ...]
[--features DIR] [--config FILE] [--out DIR]``.

CLSR embeds what it heard with a text encoder that never saw a rough transcript: a
misspelled name ("the bornin ormatn") is, to MiniLM, other words. The paper notes the
cost ("freezing the text encoder ... may limit adaptation to noise"). The adapter is a
low-rank update (models/lora.py) of a *copy* of the text encoder that embeds indexed
speech; questions keep the frozen encoder, so the question side stays the cascade's and
an index built without the adapter is still searched the same way.

Training is cheap because everything below the text encoder stays as the checkpoint
has it: every training passage is decoded once (Whisper states cached as for any run,
then the checkpoint's greedy tokens, saved in ``OUT/tokens.pt``), and the adapter learns
on those token ids, embedded exactly as the retriever embeds its argmax tokens, with
InfoNCE (both directions, in-batch negatives) against the frozen embeddings of each
passage's written questions. A random crop of each transcript (``crop``) mimics the
40 s windows an index cuts long audio into. Validation: written-question R@1 over the
held-out passages of the first corpus (all their questions), as ``benchmarks/validate.py``
scores; step 0 is the checkpoint without the adapter.

The checkpoint transcribes the passages it trained on better than speech it never heard,
so its greedy tokens of training passages are cleaner than an index's. With
``sample_temperature`` > 0 each step reads, instead, a path drawn from the checkpoint's own
posterior (the ``LATTICE_K`` best classes of each CTC frame, or of each CIF token, kept
from the one decoding pass in ``OUT/lattice.pt``) at that temperature: errors where the
model was unsure, a new draw every time a passage comes round.

``OUT`` gets ``model.pt`` (the whole CLSR checkpoint with the adapter: what ships),
``best.pt``, ``last.pt`` (resume), ``log.jsonl`` and ``curves.png``. Seeded per step,
so a resumed run draws the same batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from speechrag.config import strict_config
from speechrag.corpus.build import load_corpus
from speechrag.jsonl import read_json_object
from speechrag.metrics import wer
from speechrag.models.clsr import ClsrModel
from speechrag.models.losses import info_nce
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.trained import read_checkpoint
from speechrag.progress import training_bar
from speechrag.research.lora import adapted_copy
from speechrag.train.data import Utterance, cache_states, cap_validation, training_corpora
from speechrag.train.loop import load_resume, lr_at, plot_curves, save_resume


@dataclass(frozen=True)
class AdapterTrainConfig:
    """Everything that defines an adapter run. Saved in ``last.pt`` and the log."""

    rank: int = 8  # LoRA rank on every linear layer of the text encoder's Transformer
    steps: int = 150
    batch_size: int = 32  # passages per step, each with one of its questions
    lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.01
    temperature: float = 0.05
    # each training transcript is cut to a random contiguous share of at least ``crop``
    # of its tokens (1.0: whole passages)
    crop: float = 1.0
    # training transcripts drawn from the checkpoint's posterior at this temperature
    # (0: its greedy tokens, as the index embeds them)
    sample_temperature: float = 0.0
    eval_every: int = 50
    val_fraction: float = 0.04  # benchmarks/validate.py's held-out passages
    max_val: int = 1000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AdapterTrainConfig:
        config = strict_config(cls, dict(values), "adapter train config")
        if config.rank < 1 or config.steps < 1 or config.batch_size < 2:
            raise ValueError("adapter train config: rank and steps must be at least 1, "
                             "batch_size at least 2 (in-batch negatives)")
        if not 0 < config.crop <= 1:
            raise ValueError(f"adapter train config: crop must be in (0, 1], not {config.crop}")
        if config.sample_temperature < 0:
            raise ValueError("adapter train config: sample_temperature must be >= 0, not "
                             f"{config.sample_temperature}")
        return config


def with_adapter(model: ClsrModel, rank: int) -> ClsrModel:
    """``model`` with a fresh document adapter of ``rank`` (replacing any it had): at
    first it embeds documents exactly as the frozen encoder does."""
    model.config = dataclasses.replace(model.config, doc_adapter_rank=rank)
    model.doc_encoder = adapted_copy(model.text.transformer, rank)
    return model


LATTICE_K = 4  # classes kept per frame (CTC) or token (CIF) for sampled transcripts


@dataclass(frozen=True)
class Lattice:
    """The best ``LATTICE_K`` classes of each step of one decoding and their log-probs.

    classes (T, K) int32, logp (T, K) float16; T is the CTC head's frames (class 0 the
    blank, class c the local token c - 1) or CIF's tokens (class c the local token c - 1;
    no blank, no merging)."""

    classes: torch.Tensor
    logp: torch.Tensor
    ctc: bool

    @classmethod
    def of(cls, logits: torch.Tensor, ctc: bool) -> Lattice:
        """logits (T, C) of one utterance: the CTC frames (C = 1 + V') or CIF's tokens
        (C = V')."""
        logp = logits.float().log_softmax(-1)
        top = logp.topk(min(LATTICE_K, logp.shape[-1]), dim=-1)
        classes = top.indices + (0 if ctc else 1)
        return cls(classes.int(), top.values.half(), ctc)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes, "logp": self.logp, "ctc": self.ctc}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lattice:
        return cls(d["classes"], d["logp"], bool(d["ctc"]))

    def sample(self, temperature: float, generator: torch.Generator | None = None,
               limit: int | None = None) -> torch.Tensor:
        """(N,) local token ids of one path drawn at ``temperature`` (Gumbel-max over the
        kept classes; 0: the best class everywhere, i.e. the greedy decoding), CTC runs
        merged and blanks dropped; at most ``limit`` tokens, the first ones kept."""
        if temperature > 0:
            u = torch.rand(self.logp.shape, generator=generator).clamp(1e-9, 1 - 1e-9)
            pick = (self.logp.float() / temperature - (-u.log()).log()).argmax(-1)
        else:
            pick = self.logp.float().argmax(-1)
        path = self.classes.gather(1, pick[:, None])[:, 0].long()
        if self.ctc:
            prev = torch.cat([path.new_zeros(1), path[:-1]])
            path = path[(path > 0) & (path != prev)]
        return (path - 1)[:limit]


@torch.no_grad()
def decode_passages(model: ClsrModel, passages: list[Utterance], cache: Path,
                    tokens_path: Path, on_progress=None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Lattice]]:
    """The greedy token ids (N,) the model hears in each passage and its :class:`Lattice`,
    by utterance key; saved to ``tokens_path`` and ``lattice.pt`` beside it every 100
    passages, so an interrupted run resumes."""
    model.eval()
    lattice_path = tokens_path.with_name("lattice.pt")
    done: dict[str, torch.Tensor] = (torch.load(tokens_path, weights_only=True)
                                     if tokens_path.exists() else {})
    lattices: dict[str, dict[str, Any]] = (torch.load(lattice_path, weights_only=True)
                                           if lattice_path.exists() else {})
    todo = [u for u in passages if u.key not in done or u.key not in lattices]
    for i, u in enumerate(todo, 1):
        states = torch.load(cache / f"{u.key}.pt", weights_only=True).float()[None]
        out = model(states, torch.ones(states.shape[:2], dtype=torch.bool))
        n = int(out["n_tokens"][0])
        done[u.key] = out["token_ids"][0, :n].clone()
        if "ctc_logits" in out:
            frames = out["ctc_logits"][0, : int(out["state_mask"][0].sum())]
            lattices[u.key] = Lattice.of(frames, ctc=True).to_dict()
        else:
            lattices[u.key] = Lattice.of(out["logits"][0, :n], ctc=False).to_dict()
        if i % 100 == 0 or i == len(todo):
            for path, value in ((tokens_path, done), (lattice_path, lattices)):
                tmp = path.with_suffix(".tmp")
                torch.save(value, tmp)
                tmp.replace(path)
        if on_progress:
            on_progress(i, len(todo))
    return done, {k: Lattice.from_dict(v) for k, v in lattices.items()}


def token_error_rate(reference: list[torch.Tensor], hypothesis: list[torch.Tensor]) -> float:
    """Edit distance of token-id sequences over the reference tokens (percent): how far
    sampled transcripts stray from the greedy ones (metrics.wer over the ids as words)."""

    def words(rows: list[torch.Tensor]) -> list[str]:
        return [" ".join(map(str, r.tolist())) for r in rows]

    return 100 * wer(words(reference), words(hypothesis))


def save_like_init(model: ClsrModel, path: Path, init_state: dict[str, torch.Tensor],
                   extra: dict[str, Any]) -> None:
    """Save ``model``, each weight it took unchanged from ``--init`` in the dtype the init
    file stored it (a shipped CLSR keeps Whisper's blocks in fp16: the file stays small)."""
    model.save(path, extra=extra, dtypes={k: v.dtype for k, v in init_state.items()})


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows -> (B, N) ids (0 on padding) and (B,) lengths."""
    n = max(1, max(len(r) for r in rows))
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return ids, torch.tensor([len(r) for r in rows])


def _crop(row: torch.Tensor, least: float, rng: random.Random) -> torch.Tensor:
    if least >= 1 or len(row) < 2:
        return row
    keep = max(1, round(len(row) * rng.uniform(least, 1.0)))
    start = rng.randint(0, len(row) - keep)
    return row[start:start + keep]


@torch.no_grad()
def validate(model: ClsrModel, val: list[Utterance], tokens: dict[str, torch.Tensor],
             q_emb: torch.Tensor, truth: torch.Tensor, batch: int = 32) -> float:
    """Written-question R@1 (percent) over the held-out passages: q_emb (Q, E) frozen
    question embeddings, truth (Q,) the index of each question's passage in ``val``."""
    model.eval()
    docs = torch.cat([model.embed_documents(*_pad([tokens[u.key] for u in val[i:i + batch]]))
                      for i in range(0, len(val), batch)])
    scores = q_emb @ docs.T
    rank1 = (scores > scores.gather(1, truth[:, None])).sum(1) == 0
    return 100 * float(rank1.float().mean())


def main(argv: list[str] | None = None) -> Path:
    """Train (or resume) the adapter and return the path of the shippable ``model.pt``."""
    ap = argparse.ArgumentParser(prog="speechrag train --arch clsr-adapter",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", type=Path, required=True,
                    help="the trained CLSR checkpoint (model.pt) to adapt")
    ap.add_argument("--corpus", type=Path, required=True, action="append",
                    help="a train-split corpus; repeat it for several renditions "
                         "(validated on the first one's held-out passages)")
    ap.add_argument("--config", type=Path, help="JSON with adapter train config keys")
    ap.add_argument("--out", type=Path, default=Path("runs/clsr-adapter"))
    ap.add_argument("--features", type=Path,
                    help="cache of Whisper states (default OUT/features); runs may share one")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    config = AdapterTrainConfig.from_dict(
        read_json_object(args.config, "adapter train config") if args.config else {})
    init_payload = read_checkpoint(args.init, "clsr")  # read once: checked here, weights below
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    features: Path = args.features or out / "features"
    progress = training_bar(args.quiet)
    say = (lambda *_: None) if args.quiet else progress.console.print

    corpora = [load_corpus(c) for c in args.corpus]
    train, val, questions = training_corpora(corpora, config.val_fraction)
    val = [u for u in cap_validation(val, config.max_val) if u.kind == "passage"]
    train = [u for u in train if u.kind == "passage" and questions.get(u.passage_id)]
    if not train:
        raise ValueError(f"{args.corpus[0]}: no training passage with a written question")

    text = TextEncoder()
    model = ClsrModel.load(args.init, text)
    init_state = init_payload["state"]
    say(f"{len(train)} training and {len(val)} validation passages; caching Whisper states")
    with progress:
        task = progress.add_task("encoding", total=None, info="")
        cache = cache_states(train + val, model.config.whisper, features,
                             trained_top=model.config.encoder_layers,
                             on_progress=lambda i, n: progress.update(task, completed=i, total=n))
        progress.remove_task(task)
        task = progress.add_task("decoding", total=None, info="")
        tokens, lattices = decode_passages(
            model, train + val, cache, out / "tokens.pt",
            lambda i, n: progress.update(task, completed=i, total=n))
        progress.remove_task(task)

    # room for [CLS] and [SEP], as the model's own decoding keeps
    limit = text.transformer.config.max_position_embeddings - 2

    def drawn(u: Utterance, gen: torch.Generator) -> torch.Tensor:
        """Tokenizer ids (N,) of a path drawn from the passage's lattice."""
        return model.vocab_ids[lattices[u.key].sample(config.sample_temperature, gen, limit)]

    asked = [(q, i) for i, u in enumerate(val) for q in questions.get(u.passage_id, [])]
    q_val = torch.from_numpy(text.encode([q for q, _ in asked]))
    truth = torch.tensor([i for _, i in asked], dtype=torch.long)
    all_q = sorted({q for u in train for q in questions[u.passage_id]})
    q_row = {q: i for i, q in enumerate(all_q)}
    q_train = torch.from_numpy(text.encode(all_q))

    torch.manual_seed(config.seed)  # the adapter's initial A matrices
    with_adapter(model, config.rank)
    params = [p for n, p in model.doc_encoder.named_parameters() if "lora_" in n]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    step, log = 0, []
    last = out / "last.pt"
    if last.exists():
        state = load_resume(last)
        if (AdapterTrainConfig.from_dict(state["config"]) != config
                or state["init"] != str(args.init)):
            raise ValueError(f"{last}: was trained with another config or --init; "
                             "use a new --out")
        model.load_state_dict(state["adapter"], strict=False)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        say(f"resumed at step {step}")
    else:
        log = [{"step": 0, "init": str(args.init), "config": config.to_dict(),
                "train_passages": len(train), "val_passages": len(val),
                "val_r1": validate(model, val, tokens, q_val, truth)}]
        if config.sample_temperature > 0:  # how noisy the drawn transcripts are
            probe = train[:200]
            gen = torch.Generator().manual_seed(config.seed)
            log[0]["sampled_vs_greedy_ter"] = token_error_rate(
                [tokens[u.key] for u in probe], [drawn(u, gen) for u in probe])
            say(f"drawn transcripts differ from the greedy ones by "
                f"{log[0]['sampled_vs_greedy_ter']:.1f}% of tokens")
        say(f"step 0 (no adapter): R@1 {log[0]['val_r1']:.2f}")
    best = max(r["val_r1"] for r in log if "val_r1" in r)
    t0 = time.perf_counter() - next((r["seconds"] for r in reversed(log) if "seconds" in r), 0.0)
    with progress:
        task = progress.add_task("training", total=config.steps, completed=step, info="")
        while step < config.steps:
            rng = random.Random(config.seed * 1_000_003 + step)
            torch.manual_seed(config.seed * 1_000_003 + step)  # dropout
            for group in opt.param_groups:
                group["lr"] = lr_at(step, config.lr, config.warmup_steps, config.steps)
            chosen, seen = [], set()
            for u in rng.sample(train, len(train)):  # one rendition per passage per batch
                if u.passage_id not in seen:
                    seen.add(u.passage_id)
                    chosen.append(u)
                if len(chosen) == config.batch_size:
                    break
            if config.sample_temperature > 0:
                gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
                heard = [drawn(u, gen) for u in chosen]
            else:
                heard = [tokens[u.key] for u in chosen]
            rows = [_crop(row, config.crop, rng) for row in heard]
            qs = q_train[[q_row[rng.choice(questions[u.passage_id])] for u in chosen]]
            model.doc_encoder.train()
            loss = info_nce(qs, model.embed_documents(*_pad(rows)), config.temperature,
                            symmetric=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            row = {"step": step, "loss": loss.item(), "nll": loss.item(),
                   "lr": lr_at(step - 1, config.lr, config.warmup_steps, config.steps),
                   "seconds": time.perf_counter() - t0}
            if step % config.eval_every == 0 or step == config.steps:
                row["val_r1"] = validate(model, val, tokens, q_val, truth)
                log.append(row)
                save_like_init(model, out / "model.pt", init_state,
                               {"step": step, "adapter_of": str(args.init)})
                if row["val_r1"] > best:
                    best = row["val_r1"]
                    save_like_init(model, out / "best.pt", init_state,
                                   {"step": step, "score": best, "adapter_of": str(args.init)})
                adapter = {k: v for k, v in model.trained_state_dict().items()
                           if k.startswith("doc_encoder.")}
                save_resume(last, {"adapter": adapter, "optimizer": opt.state_dict(),
                                   "step": step, "config": config.to_dict(),
                                   "init": str(args.init)})
                (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
                plot_curves(log, out / "curves.png", "CLSR document adapter")
                say(f"step {step}/{config.steps} loss {row['loss']:.3f} R@1 {row['val_r1']:.2f}")
            elif step % 10 == 0:
                log.append(row)
            progress.update(task, completed=step, info=f"loss {row['loss']:.3f}")
    if not (out / "best.pt").exists():  # the adapter never beat step 0: ship the last one
        save_like_init(model, out / "best.pt", init_state,
                       {"step": step, "adapter_of": str(args.init)})
    return out / "model.pt"
