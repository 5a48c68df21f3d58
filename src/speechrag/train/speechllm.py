"""Training the SpeechLLM's projector: ``speechrag train --arch speechllm``.

Two stages, as in the contrastive pretraining paper (../shared/papers/001), each a run of
its own (stage 2 starts from stage 1's ``model.pt`` with ``--init``):

1. ``"stage": "pretrain"``, task-independent, on spoken train passages and (with
   ``sentences``) their sentences spoken one by one, with their transcripts:
   ``"objective": "contrastive"`` (InfoNCE between projected speech and the
   LLM's representation of the transcript, ``similarity`` cosine or wasserstein, at the
   LLM ``layers`` given, summed: ``[0]`` is the paper's "emb", ``[0, 5, 10, 15, 20]`` its
   "all") or ``"asr"`` (the LLM writes the transcript after the speech: the paper's ASR
   pretraining baseline). No pretraining is stage 2 without ``--init``.
2. ``"stage": "finetune"``, the tasks the product needs, built from train passages as the
   answer benchmark builds its questions (:func:`speechrag.corpus.qa.questions_for`) and
   laid out as ``speechrag ask`` prompts a SpeechLLM (:func:`speechrag.rag.speech_prompt`:
   the passage that answers among ``distractors`` others, numbered; the answer
   ``gold [n]``): ``spoken_qa`` (passages as speech, the question written),
   ``spoken_question`` (passages written, the question spoken: synthesized once in the
   passage's training voice into ``FEATURES/tts/questions/``) and ``asr``, on
   ``data_fraction`` of the passages (the paper's 10% / 100%).

Only the projector trains; the LLM and Whisper stay frozen (Whisper states are cached
once, as for the retrievers). Validation is on train passages held out by hash: the
transcript R@1 of the alignment (pretrain), the mean answer loss and greedy answer
accuracy (finetune). ``OUT/`` holds ``last.pt`` (resume), ``model.pt``, ``log.jsonl``
and ``curves.png``; a step's batch depends only on (seed, step), so a resumed run sees
the batches an uninterrupted one would have.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechrag.config import strict_config
from speechrag.corpus import tts
from speechrag.corpus.build import load_corpus
from speechrag.corpus.qa import contains, questions_for
from speechrag.jsonl import read_json_object
from speechrag.models.alignment import SIMILARITIES, AlignmentConfig, alignment_loss
from speechrag.models.speech_states import pad_states
from speechrag.models.speechllm import SPEECH, SpeechLLM, SpeechLLMConfig
from speechrag.models.trained import read_checkpoint
from speechrag.progress import training_bar
from speechrag.train.data import Utterance, cache_states, cap_validation, training_corpora
from speechrag.train.loop import load_resume, lr_at, plot_curves, save_resume

STAGES = ("pretrain", "finetune")
OBJECTIVES = ("contrastive", "asr")
TASKS = ("spoken_qa", "spoken_question", "asr")
ASR_PROMPT = f"{SPEECH}\nCan you transcribe this audio?"  # the paper's test prompt


@dataclass(frozen=True)
class SpeechLLMTrainConfig:
    model: SpeechLLMConfig = field(default_factory=SpeechLLMConfig)
    stage: str = "pretrain"
    objective: str = "contrastive"  # pretrain only
    similarity: str = "cosine"  # contrastive only
    layers: tuple[int, ...] = (0,)  # LLM layers of the contrastive loss
    temperature: float = 0.1
    sentences: bool = True  # pretrain: sentence-level pieces beside whole passages
    tasks: tuple[str, ...] = TASKS  # finetune only
    distractors: int = 1  # finetune QA: other passages beside the one that answers
    data_fraction: float = 1.0  # finetune: share of the training passages used
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 100
    val_fraction: float = 0.05
    max_val: int = 24  # validation passages (and their questions) scored
    max_val_examples: int = 48  # finetune: held-out examples scored (seeded sample)
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SpeechLLMTrainConfig:
        values = dict(values)
        if isinstance(values.get("model"), dict):
            values["model"] = SpeechLLMConfig.from_dict(values["model"])
        for key in ("layers", "tasks"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return strict_config(cls, values, "SpeechLLM train config")

    def __post_init__(self) -> None:
        problems = [f"{name} must be {rule}, not {getattr(self, name)!r}"
                    for name, ok, rule in (
                        ("stage", self.stage in STAGES, f"one of {STAGES}"),
                        ("objective", self.objective in OBJECTIVES, f"one of {OBJECTIVES}"),
                        ("similarity", self.similarity in SIMILARITIES,
                         f"one of {SIMILARITIES}"),
                        ("layers", bool(self.layers) and min(self.layers) >= 0,
                         "a non-empty list of layers >= 0"),
                        ("tasks", bool(self.tasks) and set(self.tasks) <= set(TASKS),
                         f"a non-empty subset of {TASKS}"),
                        ("data_fraction", 0 < self.data_fraction <= 1, "in (0, 1]"),
                        ("distractors", self.distractors >= 0, ">= 0"),
                        ("steps", self.steps >= 1, ">= 1"),
                        ("batch_size", self.batch_size >= 2, ">= 2 (in-batch negatives)"),
                        ("lr", self.lr >= 0, ">= 0"),
                        ("temperature", self.temperature > 0, "> 0"),
                        ("eval_every", self.eval_every >= 1, ">= 1"),
                        ("val_fraction", 0 <= self.val_fraction < 1, "in [0, 1)"),
                        ("max_val_examples", self.max_val_examples >= 1, ">= 1"),
                    ) if not ok]
        if problems:
            raise ValueError("SpeechLLM train config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name(self) -> str:
        """The paper's name of the run: contr-cos-emb, asr-pretrain, finetune-10%, ..."""
        if self.stage == "finetune":
            return f"finetune-{round(100 * self.data_fraction)}%"
        if self.objective == "asr":
            return "asr-pretrain"
        where = "emb" if self.layers == (0,) else "all" if len(self.layers) > 1 else \
            f"l{self.layers[0]}"
        return f"contr-{'cos' if self.similarity == 'cosine' else 'wasser'}-{where}"


@dataclass(frozen=True)
class Example:
    """One example of the answer loss: a prompt (``system``, ``user`` with SPEECH
    markers), the utterances whose speech fills the markers in order, and the answer."""

    system: str | None
    user: str
    speech: tuple[Utterance, ...]
    answer: str
    gold: str  # the short answer a validation answer must contain
    passage_id: str
    task: str


def asr_example(u: Utterance) -> Example:
    return Example(None, ASR_PROMPT, (u,), u.text, u.text, u.passage_id, "asr")


def spoken(text: str, voice: str, wav: Path, key: str, passage_id: str, kind: str
           ) -> Utterance:
    """``text`` spoken once in the training voice ``voice`` into ``wav`` (kept: a resumed
    run reuses it), as an utterance of ``passage_id``."""
    from speechrag import audio

    if not wav.exists():
        if tts.role_of(voice) != "training":
            raise ValueError(f"{voice}: not a training voice")
        wav.parent.mkdir(parents=True, exist_ok=True)
        tmp = wav.with_suffix(".tmp.wav")
        tts.synthesize(text, tts.parse_voice(voice), tmp)
        tmp.replace(wav)
    return Utterance(key, passage_id, str(wav), 0.0, audio.duration_s(wav), voice, text, kind)


def sentence_pieces(passages: list[Utterance], pieces_dir: Path, min_words: int = 5,
                    on_progress: Callable[[int, int], None] | None = None
                    ) -> list[Utterance]:
    """Stage 1's sentence-level pieces: each sentence of at least ``min_words`` words of
    each passage, spoken on its own in the passage's voice (``pieces_dir``)."""
    from speechrag.corpus.wikispoken import sentences

    out = []
    for n, u in enumerate(passages, start=1):
        if on_progress:
            on_progress(n, len(passages))
        for i, sentence in enumerate(sentences(u.text)):
            if len(sentence.split()) >= min_words:
                name = f"{u.key}-s{i}"
                out.append(spoken(sentence, u.voice, pieces_dir / f"{name}.wav", f"p-{name}",
                                  u.passage_id, "piece"))
    return out


def finetune_examples(passages: list[Utterance], questions_dir: Path, tasks: tuple[str, ...],
                      about: dict[str, dict[str, str]] | None = None, distractors: int = 1,
                      seed: int = 0, on_progress: Callable[[int, int], None] | None = None
                      ) -> list[Example]:
    """The fine-tuning examples of train passages, in the layout ``speechrag ask`` prompts
    a SpeechLLM with (:func:`speechrag.rag.speech_prompt`): the passage that answers
    among ``distractors`` other passages (seeded), numbered, and the answer written as
    the shipped prompt asks, ``gold [n]``. Questions are the answer benchmark's
    (:func:`speechrag.corpus.qa.questions_for`; ``about``: each passage id's title and
    description, for the title questions); a spoken question is synthesized once in the
    passage's own training voice."""
    from speechrag.rag import speech_prompt
    from speechrag.timestamps import mmss

    def label(u: Utterance) -> str:
        return f"{Path(u.audio).name}, {mmss(u.start)}-{mmss(u.end)}"

    out: list[Example] = []
    for done, u in enumerate(passages, start=1):
        if on_progress:
            on_progress(done, len(passages))
        if "asr" in tasks:
            out.append(asr_example(u))
        qs = questions_for({"passage_id": u.passage_id, "text": u.text,
                            **(about or {}).get(u.passage_id, {"title": ""})})
        for q in qs:
            rng = random.Random(f"{seed}:{q['id']}")
            others = [o for o in passages if o.passage_id != u.passage_id]
            shown = rng.sample(others, min(distractors, len(others))) + [u]
            rng.shuffle(shown)
            answer = f"{q['gold']} [{shown.index(u) + 1}]"
            labels = [label(o) for o in shown]
            if "spoken_qa" in tasks:  # the passages as speech, the question written
                system, user = speech_prompt(q["text"], labels, [None] * len(shown))
                out.append(Example(system, user, tuple(shown), answer, q["gold"],
                                   u.passage_id, "spoken_qa"))
            if "spoken_question" in tasks:  # the passages written, the question spoken
                name = f"{q['id']}-{u.voice.replace(':', '_')}"
                question = spoken(q["spoken"], u.voice, questions_dir / f"{name}.wav",
                                  f"q-{name}", u.passage_id, "query")
                system, user = speech_prompt(None, labels, [o.text for o in shown])
                out.append(Example(system, user, (question,), answer, q["gold"],
                                   u.passage_id, "spoken_question"))
    return out


def _subset(passages: list[Utterance], fraction: float, seed: int) -> list[Utterance]:
    """``fraction`` of the passages (by id, seeded): every rendition of a kept passage."""
    ids = sorted({u.passage_id for u in passages})
    random.Random(seed).shuffle(ids)
    keep = set(ids[:max(1, round(fraction * len(ids)))])
    return [u for u in passages if u.passage_id in keep]


class States:
    """Cached Whisper states by utterance key (fp16 on disk, float32 here)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache

    def __call__(self, us: list[Utterance], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        states = [torch.load(self.cache / f"{u.key}.pt", weights_only=True).float()
                  for u in us]
        padded, mask = pad_states(states)
        return padded.to(device), mask.to(device)


def contrastive_step(model: SpeechLLM, config: SpeechLLMTrainConfig, states: States,
                     us: list[Utterance], device: torch.device) -> dict[str, torch.Tensor]:
    x, m = states(us, device)
    s, sm, t, tm = model.align_states(x, m, [u.text for u in us], config.layers)
    align = AlignmentConfig(similarity=config.similarity, temperature=config.temperature,
                            layers=tuple((i, i) for i in range(len(config.layers))))
    loss = alignment_loss(align, s, sm, t, tm)
    return {"loss": loss, "align": loss.detach()}


def lm_step(model: SpeechLLM, examples: list[Example], states: States, device: torch.device
            ) -> dict[str, torch.Tensor]:
    """Answer loss over a batch: every utterance of every example through the projector
    in one pass, then each prompt with its speech spliced in."""
    us = [u for e in examples for u in e.speech]
    x, m = states(us, device)
    speech, sm = model.speech_tokens(x, m)
    runs = [speech[i][sm[i]] for i in range(len(us))]
    batch, i = [], 0
    for e in examples:
        n = len(e.speech)
        batch.append(model.embed_prompt(model.prompt(e.user, answer=e.answer, system=e.system),
                                        runs[i:i + n], answer=e.answer))
        i += n
    loss = model.lm_loss(batch)
    return {"loss": loss, "ce": loss.detach()}


@torch.no_grad()
def validate(model: SpeechLLM, config: SpeechLLMTrainConfig, states: States,
             val: list[Utterance], val_examples: list[Example], device: torch.device
             ) -> dict[str, float]:
    model.eval()
    out: dict[str, float] = {}
    try:
        if config.stage == "pretrain" and config.objective == "contrastive":
            x, m = states(val, device)
            s, sm, t, tm = model.align_states(x, m, [u.text for u in val], config.layers)
            from speechrag.models.alignment import similarity_matrix

            sim = similarity_matrix(config.similarity, s[-1], sm, t[-1], tm)
            out["val_align"] = float(contrastive_step(model, config, states, val, device)
                                     ["loss"])
            out["val_align_r1"] = float((sim.argmax(1) == torch.arange(len(val),
                                                                       device=device))
                                        .float().mean())
        else:
            losses = [float(lm_step(model, val_examples[i:i + 4], states, device)["loss"])
                      for i in range(0, len(val_examples), 4)]
            out["val_ce"] = sum(losses) / max(1, len(losses))
            qa = [e for e in val_examples if e.task != "asr"]
            if qa:
                right = 0
                for e in qa:
                    x, m = states(list(e.speech), device)
                    got = model.answer(e.user, [(x[i][m[i]], m[i][m[i]])
                                                for i in range(len(e.speech))],
                                       max_tokens=16, system=e.system)
                    right += contains(got, e.gold)
                out["val_answer_acc"] = right / len(qa)
    finally:
        model.train()
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="speechrag train --arch speechllm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, action="append",
                    help="a train-split corpus (repeat for more renditions)")
    ap.add_argument("--config", type=Path, help="JSON with train config keys")
    ap.add_argument("--out", type=Path, default=Path("runs/speechllm"))
    ap.add_argument("--features", type=Path, help="Whisper state cache (default OUT/features)")
    ap.add_argument("--init", type=Path, help="start from this model.pt (stage 2 after 1)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    config = SpeechLLMTrainConfig.from_dict(
        read_json_object(args.config, "train config") if args.config else {})
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    progress = training_bar(args.quiet)
    say = (lambda *_: None) if args.quiet else progress.console.print
    features: Path = args.features or out / "features"
    speech_dir = features / "tts"  # spoken pieces and questions, shared like the states

    corpora = [load_corpus(c) for c in args.corpus]
    train, val, _ = training_corpora(corpora, config.val_fraction)
    train = [u for u in train if u.kind == "passage"]  # spoken queries are not used here
    val = [u for u in cap_validation(val, config.max_val) if u.kind == "passage"]
    examples: list[Example] = []
    val_examples: list[Example] = []
    if config.stage == "finetune":
        from speechrag.corpus.wikispoken import load_passages

        described = {p.passage_id: p.description for p in load_passages()}
        about = {m["passage_id"]: {"title": m["title"],
                                   "description": described.get(m["passage_id"], "")}
                 for c in corpora for m in c.manifest}
        train = _subset(train, config.data_fraction, config.seed)
        with progress:
            task = progress.add_task("speaking questions", total=None, info="")
            done = lambda i, n: progress.update(task, completed=i, total=n)  # noqa: E731
            examples = finetune_examples(train, speech_dir / "questions", config.tasks, about,
                                         config.distractors, config.seed, done)
            val_examples = finetune_examples(val, speech_dir / "questions", config.tasks,
                                             about, config.distractors, config.seed)
            if len(val_examples) > config.max_val_examples:  # answering them takes minutes
                val_examples = random.Random(config.seed).sample(val_examples,
                                                                 config.max_val_examples)
            progress.remove_task(task)
    else:
        if config.sentences:  # a batch draws one utterance per passage: whole or a piece
            with progress:
                task = progress.add_task("speaking sentences", total=None, info="")
                train = train + sentence_pieces(
                    train, speech_dir / "pieces",
                    on_progress=lambda i, n: progress.update(task, completed=i, total=n))
                progress.remove_task(task)
        if config.objective == "asr":  # validated by its own loss on held-out passages
            val_examples = [asr_example(u) for u in val]
    speech = train + val + [u for e in examples + val_examples for u in e.speech
                            if u.kind == "query"]
    say(f"{config.name}: {len(train)} training utterances, {len(examples)} fine-tuning "
        f"examples, {len(val)} validation passages; caching Whisper states")
    with progress:
        caching = progress.add_task("encoding", total=None, info="")
        cache = cache_states(list({u.key: u for u in speech}.values()), config.model.whisper,
                             features,
                             on_progress=lambda i, n: progress.update(caching, completed=i,
                                                                      total=n))
        progress.remove_task(caching)
    states = States(cache)

    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = SpeechLLM(config.model).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    step, log = 0, []
    last = out / "last.pt"
    if args.init is not None and not last.exists():
        init = read_checkpoint(args.init, SpeechLLM.arch)
        if SpeechLLMConfig.from_dict(init["config"]) != config.model:
            raise ValueError(f"{args.init}: a projector of another model config")
        model.load_state_dict(init["state"], strict=False)
        log = [{"step": 0, "init": str(args.init), "init_step": init.get("step")}]
    if last.exists():
        state = load_resume(last, device)
        if state.get("train_config") != config.to_dict():
            raise ValueError(f"{last}: was trained with another config; use a new --out")
        model.load_state_dict(state["state"], strict=False)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        say(f"resumed at step {step}")
    t0 = time.perf_counter() - next((r["seconds"] for r in reversed(log) if "seconds" in r), 0.0)
    with progress:
        task = progress.add_task("training", total=config.steps, completed=step, info="")
        while step < config.steps:
            rng = random.Random(config.seed * 1_000_003 + step)
            torch.manual_seed(config.seed * 1_000_003 + step)  # dropout too: resumable
            for group in opt.param_groups:
                group["lr"] = lr_at(step, config.lr, config.warmup_steps, config.steps)
            if config.stage == "finetune":
                parts = lm_step(model, rng.sample(examples, min(config.batch_size,
                                                               len(examples))), states, device)
            else:
                # distinct passages: no in-batch negative is secretly a positive
                ids = sorted({u.passage_id for u in train})
                chosen = set(rng.sample(ids, min(config.batch_size, len(ids))))
                by_id: dict[str, list[Utterance]] = {}
                for u in train:
                    if u.passage_id in chosen:
                        by_id.setdefault(u.passage_id, []).append(u)
                batch = [rng.choice(by_id[i]) for i in sorted(chosen)]
                if config.objective == "contrastive":
                    parts = contrastive_step(model, config, states, batch, device)
                else:
                    parts = lm_step(model, [asr_example(u) for u in batch], states, device)
            opt.zero_grad()
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            step += 1
            row = {"step": step, **{k: float(v.detach()) for k, v in parts.items()},
                   "lr": lr_at(step - 1, config.lr, config.warmup_steps, config.steps),
                   "seconds": time.perf_counter() - t0}
            if step % config.eval_every == 0 or step == config.steps:
                if val:
                    row |= validate(model, config, states, val, val_examples, device)
                log.append(row)
                model.save(out / "model.pt", extra={"step": step, "run": config.name,
                                                    "train_config": config.to_dict()})
                save_resume(last, {"state": model.trained_state_dict(),
                                   "optimizer": opt.state_dict(), "step": step,
                                   "train_config": config.to_dict()})
                (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
                plot_curves(log, out / "curves.png", f"SpeechLLM {config.name}")
                say(f"step {step}/{config.steps} " + " ".join(
                    f"{k} {v:.3f}" for k, v in row.items() if k.startswith(("loss", "val_"))))
            elif step % 10 == 0:
                log.append(row)
            progress.update(task, completed=step, info=f"loss {row['loss']:.3f}")
    return out / "model.pt"
