"""The training app every architecture shares: config, data, loop, checkpoints, curves.

``speechrag train --arch NAME --corpus DIR [--config FILE] [--out DIR] [--features DIR]``

An architecture (:class:`Arch`) says how to build its model and how to validate it;
everything else is here: the corpus is read (train split and training voices only),
Whisper states are cached once (``--features`` lets several runs share one cache, so
architectures are compared on the same features), batches are seeded by step, and
two stages run (stage 1 ``contrastive=False``, stage 2 ``contrastive=True``).

``out/`` holds ``last.pt`` (model, optimizer, step: resume from it), ``model.pt``
(config and trained weights only: what ships) as of the latest validation, ``best.pt``
(the same, from the validation with the best :func:`selection_score`), ``log.jsonl``
(one line per logged step) and ``curves.png``. A progress bar shows steps, loss and
time left. Seeded; a resumed run is bit-identical to an uninterrupted
one; uses a GPU when one is present.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechrag.config import strict_config
from speechrag.corpus.build import Corpus, load_corpus
from speechrag.jsonl import read_json_object
from speechrag.models.encoder_top import grow_top_state
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.trained import read_checkpoint
from speechrag.progress import training_bar
from speechrag.train.data import (
    Batches,
    Utterance,
    cache_states,
    cap_validation,
    to_device,
    training_corpora,
)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings around an architecture's frozen model config."""

    model: Any  # ClsrConfig, SealConfig, ...
    stage1_steps: int = 2000
    stage2_steps: int = 2000
    batch_size: int = 16
    lr: float = 5e-4
    # learning rate of Whisper's trained top blocks (model.encoder_layers > 0) as a
    # fraction of ``lr``: pretrained weights take smaller steps than the new parts; 0
    # freezes them (no gradients: a head trained on top of blocks an --init run trained)
    encoder_lr_scale: float = 0.1
    # learning rate of the decoder blocks and positions a model took from Whisper's
    # decoder (CLSR's ``decoder.init = "whisper"``) as a fraction of ``lr``
    decoder_lr_scale: float = 1.0
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 200
    val_fraction: float = 0.05
    max_val: int = 64  # validation passages scored (with their spoken queries)
    query_fraction: float = 0.5  # share of each batch that is spoken queries, if any
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any], model_cls: type) -> TrainConfig:
        """Unknown keys (here or in the model config) are an error."""
        values = dict(values)
        if not isinstance(values.get("model", {}), dict):
            raise ValueError("train config: model must be a JSON object of model settings")
        values["model"] = model_cls.from_dict(values.get("model", {}))
        return strict_config(cls, values, "train config")

    def __post_init__(self) -> None:
        """Settings no run can use are refused here, before any audio is encoded."""
        problems = [f"{name} must be {rule}, not {getattr(self, name)}" for name, ok, rule in (
            ("stage1_steps", self.stage1_steps >= 0, ">= 0"),
            ("stage2_steps", self.stage2_steps >= 0, ">= 0"),
            ("batch_size", self.batch_size >= 2, ">= 2 (in-batch negatives)"),
            ("lr", self.lr >= 0, ">= 0"),
            ("encoder_lr_scale", self.encoder_lr_scale >= 0, ">= 0"),
            ("decoder_lr_scale", self.decoder_lr_scale >= 0, ">= 0"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("grad_clip", self.grad_clip > 0, "> 0"),
            ("eval_every", self.eval_every >= 1, ">= 1"),
            ("val_fraction", 0 <= self.val_fraction < 1, "in [0, 1)"),
            ("max_val", self.max_val >= 1, ">= 1"),
            ("query_fraction", 0 <= self.query_fraction <= 1, "in [0, 1]"),
        ) if not ok]
        if self.stage1_steps + self.stage2_steps < 1:
            problems.append("stage1_steps + stage2_steps must be at least 1")
        if problems:
            raise ValueError("train config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Arch:
    """What differs between architectures."""

    name: str
    config_cls: type  # frozen model config with from_dict
    build: Callable[[Any, TextEncoder], nn.Module]  # (model config, text encoder) -> model
    validate: Callable[[nn.Module, Batches, list[Utterance], torch.device], dict]
    doc: str = ""


def lr_at(step: int, lr: float, warmup_steps: int, total_steps: int) -> float:
    """The one learning-rate schedule of every trainer: linear warm-up over
    ``warmup_steps``, then cosine decay to 10% of ``lr`` at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_resume(path: Path, payload: dict[str, Any]) -> None:
    """Write a run's resume state (``last.pt``: weights, optimizer, step, config)
    atomically: a run killed while writing keeps the previous one."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_resume(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A run's resume state, as :func:`save_resume` wrote it."""
    return torch.load(path, map_location=device, weights_only=True)


LOSS_KEYS = ("loss", "ce", "cif_ce", "mae", "ctc", "nll", "align", "val_ce", "val_align")
VAL_KEYS = {"val_wer": "WER %", "val_r1": "query R@1 %", "val_align_r1": "transcript R@1 %",
            "val_spoken_r1": "spoken query -> text R@1 %",
            "val_answer_acc": "answer accuracy %"}


def plot_curves(log: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    rows = [r for r in log if "loss" in r]
    for key in LOSS_KEYS:
        if key.startswith("val_"):  # validation losses: only on validation rows
            pts = [r for r in rows if key in r]
            if pts:
                a.plot([r["step"] for r in pts], [r[key] for r in pts], "o-", label=key)
        elif any(key in r for r in rows):
            a.plot([r["step"] for r in rows], [r.get(key, float("nan")) for r in rows],
                   label=key)
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_title(f"{title} training losses".strip())
    a.legend()
    for key, label in VAL_KEYS.items():
        val = [r for r in log if key in r]
        if val:
            b.plot([r["step"] for r in val], [100 * r[key] for r in val], "o-", label=label)
    b.set_xlabel("step")
    b.set_title("validation (held-out train passages)")
    if b.lines:
        b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def selection_score(row: dict) -> float | None:
    """The validation number ``best.pt`` is chosen by: the mean of the query R@1s the
    architecture reports (written queries; spoken queries -> text where validated), or
    None for a row without validation."""
    scores = [row[k] for k in ("val_r1", "val_spoken_r1") if k in row]
    return sum(scores) / len(scores) if scores else None


def _describe(row: dict) -> str:
    parts = [f"loss {row['loss']:.3f}"]
    if "token_acc" in row:
        parts.append(f"acc {row['token_acc']:.2f}")
    if "val_wer" in row:
        parts.append(f"val WER {row['val_wer']:.2f}")
    if "val_r1" in row:
        parts.append(f"R@1 {row['val_r1']:.2f}")
    if "val_align_r1" in row:
        parts.append(f"transcript R@1 {row['val_align_r1']:.2f}")
    if "val_spoken_r1" in row:
        parts.append(f"spoken->text R@1 {row['val_spoken_r1']:.2f}")
    return " ".join(parts)


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The trainable parameters in groups, each with its ``lr_scale`` (x the schedule's
    rate): everything new at 1, Whisper's trained top blocks (``encoder_top.*``) at
    ``encoder_lr_scale``, and the decoder weights a model took from Whisper's decoder
    (names under its ``pretrained_decoder_prefixes()``) at ``decoder_lr_scale``. Empty
    groups are left out, so a model without pretrained parts has one group, as before."""
    decoder = tuple(getattr(model, "pretrained_decoder_prefixes", tuple)())
    new, top, dec = [], [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (top if name.startswith("encoder_top.")
             else dec if name.startswith(decoder) else new).append(p)
    groups = [{"params": new, "lr_scale": 1.0}]
    if top:
        groups.append({"params": top, "lr_scale": config.encoder_lr_scale})
    if dec:
        groups.append({"params": dec, "lr_scale": config.decoder_lr_scale})
    return groups


def init_changes(old: Any, new: Any) -> dict[str, list[Any]]:
    """Model-config fields that differ between an --init checkpoint and this run ->
    {field: [old, new]}, nested settings by their dotted name (``cif.ctc_weight``). A run
    may add parts (the glancing sampler, a CTC head: new weights start fresh) or change
    how trained parts are used (the VQ ablation in stage 2), as long as every saved
    weight fits; the log records what changed."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v}
        return out

    a, b = flat(old.to_dict()), flat(new.to_dict())
    return {k: [a.get(k), b.get(k)] for k in {**a, **b} if a.get(k) != b.get(k)}


def load_init_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load an ``--init`` checkpoint's trained weights into ``model``, whose config may
    add parts; -> the names of the added modules that start as the identity.

    Every saved weight must fit (ValueError otherwise). Weights the checkpoint lacks keep
    their fresh initialization, except that a module with ``start_as_identity()`` (a
    residual block) that is wholly new is zeroed into a pass-through, so a deeper head
    starts as the trained one (function-preserving growth, as in Net2Net, Chen et al.
    2016) rather than from a random perturbation of it."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape
        raise ValueError("weights do not fit this run's model config "
                         f"({str(err).splitlines()[-1].strip()})") from err
    if unexpected or any(k in state for k in missing):
        raise ValueError("weights do not fit this run's model config")
    new = set(missing)
    identity = []
    for name, module in model.named_modules():
        start = getattr(module, "start_as_identity", None)
        keys = [f"{name}.{k}" for k in module.state_dict()]
        if callable(start) and keys and all(k in new for k in keys):
            start()
            identity.append(name)
    return identity


def run(arch: Arch, argv: list[str] | None = None) -> Path:
    """Train (or resume) and return the path of the shippable ``model.pt``."""
    ap = argparse.ArgumentParser(prog=f"speechrag train --arch {arch.name}",
                                 description=arch.doc or __doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, action="append",
                    help="a train-split corpus; repeat it to train on several renditions "
                         "of the split (other --voices or --seed), validated on the "
                         "first one's held-out passages")
    ap.add_argument("--config", type=Path, help="JSON with train config keys")
    ap.add_argument("--out", type=Path, default=Path(f"runs/{arch.name}"),
                    help="run directory (checkpoints, log, curves)")
    ap.add_argument("--features", type=Path,
                    help="cache of Whisper states (default OUT/features); runs may share one")
    ap.add_argument("--init", type=Path,
                    help="start from this model.pt's trained weights (new optimizer and "
                         "schedule), e.g. stage 2 after a stage-1 run; the model config may "
                         "add parts or switch options as long as every saved weight fits")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    config = TrainConfig.from_dict(
        read_json_object(args.config, "train config") if args.config else {}, arch.config_cls)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    features: Path = args.features or out / "features"
    progress = training_bar(args.quiet)
    say = (lambda *_: None) if args.quiet else progress.console.print

    corpora: list[Corpus] = [load_corpus(c) for c in args.corpus]
    train, val, queries = training_corpora(corpora, config.val_fraction)
    val = cap_validation(val, config.max_val)
    say(f"{len(train)} training and {len(val)} validation utterances; caching Whisper states")
    with progress:
        caching = progress.add_task("encoding", total=None, info="")
        features = cache_states(train + val, config.model.whisper, features,
                                trained_top=config.model.encoder_layers,
                                on_progress=lambda i, n: progress.update(caching, completed=i,
                                                                         total=n))
        progress.remove_task(caching)

    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = TextEncoder(config.model.text_encoder)
    model = arch.build(config.model, text).to(device).train()
    if config.encoder_lr_scale == 0 and getattr(model, "encoder_top", None) is not None:
        model.encoder_top.requires_grad_(False)  # frozen: no backward pass through them
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, config), lr=config.lr,
                            weight_decay=config.weight_decay)
    step, log = 0, []
    last = out / "last.pt"
    if args.init is not None and not last.exists():
        init = read_checkpoint(args.init, arch.name)  # on the CPU: copied to the device
        init_config = arch.config_cls.from_dict(init["config"])
        changes = init_changes(init_config, config.model)
        frozen = {"whisper", "text_encoder", "d_encoder"} & set(changes)
        if frozen:
            raise ValueError(f"{args.init}: trained on another model config "
                             f"({', '.join(sorted(frozen))} differ)")
        try:
            state = grow_top_state(init["state"], getattr(init_config, "encoder_layers", 0),
                                   getattr(config.model, "encoder_layers", 0))
            identity = load_init_weights(model, state)
        except ValueError as err:
            raise ValueError(f"{args.init}: {err}") from err
        log = [{"step": 0, "init": str(args.init), "init_step": init.get("step"),
                **({"init_changes": changes} if changes else {}),
                **({"init_identity": identity} if identity else {})}]
        say(f"initialized from {args.init} (its step {init.get('step')})"
            + (f"; model config changes: {changes}" if changes else "")
            + (f"; new blocks start as identity: {identity}" if identity else ""))
    if last.exists():
        state = load_resume(last, device)
        saved = TrainConfig.from_dict(state["train_config"], arch.config_cls)  # new defaults
        if saved != config or state.get("arch") != arch.name:
            raise ValueError(f"{last}: was trained with another config; use a new --out")
        model.load_state_dict(state["state"], strict=False)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        say(f"resumed at step {step}")
    batches = Batches(train, queries, text, features, config.batch_size, config.seed,
                      config.query_fraction)
    total = config.stage1_steps + config.stage2_steps
    scored = [x for x in map(selection_score, log) if x is not None]
    best = max(scored) if scored else None
    # "seconds" in the log is training time since step 0, across resumes
    t0 = time.perf_counter() - next((r["seconds"] for r in reversed(log) if "seconds" in r), 0.0)
    with progress:
        task = progress.add_task("training", total=total, completed=step, info="")
        while step < total:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, config.lr, config.warmup_steps, total) * group.get(
                    "lr_scale", 1.0)
            b = to_device(batches.batch(step), device)
            parts = model.training_loss(**b, contrastive=step >= config.stage1_steps)
            opt.zero_grad()
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            step += 1
            row = {"step": step, "stage": 1 if step <= config.stage1_steps else 2,
                   **{k: float(v.detach()) for k, v in parts.items()},
                   "lr": lr_at(step - 1, config.lr, config.warmup_steps, total),
                   "seconds": time.perf_counter() - t0}
            if step % config.eval_every == 0 or step == total:
                if val:
                    row |= arch.validate(model, batches, val, device)
                log.append(row)
                model.save(out / "model.pt", extra={"step": step})
                score = selection_score(row)
                if score is not None and (best is None or score > best):
                    best = score
                    model.save(out / "best.pt", extra={"step": step, "score": score})
                save_resume(last, {"state": model.trained_state_dict(),
                                   "optimizer": opt.state_dict(), "step": step,
                                   "arch": arch.name, "train_config": config.to_dict()})
                (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
                plot_curves(log, out / "curves.png", arch.name.upper())
                say(f"step {step}/{total} {_describe(row)}")
            elif step % 10 == 0:
                log.append(row)
            progress.update(task, completed=step, info=f"loss {row['loss']:.3f}")

    return out / "model.pt"
