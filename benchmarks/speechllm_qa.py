"""The SpeechLLM's table (../shared/papers/001 at our scale) on the answer benchmark.

    .venv/bin/python benchmarks/speechllm_qa.py --runs NAME=PATH [NAME=PATH ...]
        [--baselines] [--tasks spoken_qa spoken_question asr] [--every 3] [--limit N]
        [--compare A B]

WikiSpoken-QA (``speechrag.corpus.qa``) over the 100-passage WikiSpoken test corpus in
the evaluation voices (the one ``benchmarks/answers.py`` builds): test passages and
voices that no projector trained on. For each projector (``NAME=PATH``, a ``model.pt``
of ``speechrag train --arch speechllm``) and each question:

- ``spoken_qa``: the gold passage's audio (its span of the long-form episode) and one
  distractor passage's (seeded), numbered, and the written question -> the answer
  (the layout ``ask --context speech`` prompts with and fine-tuning used);
- ``spoken_question``: the same two passages as text, the question spoken (its
  evaluation-voice recording) -> the answer (``ask --speech-llm``);
- ``asr``: the LLM's transcript of each gold passage ("Can you transcribe this audio?"):
  word error rate against the passage text.

``--baselines`` adds the same LLM in PyTorch without a projector, reading text: the
cascade (Whisper base's transcripts of the passages, or of the spoken question) and the
clean passage text (the upper bound). Answer accuracy is the benchmark's (the
normalized gold string in the answer). ``--compare A B``: exact McNemar test of A
against B on the questions both answered, per task.

Every answer is kept as it is made (``<cache>/bench/speechllm/<llm>/<run>-<task>.jsonl``),
so a stopped run resumes; every projector of a table is for ``--llm``. Report:
benchmarks/results/speechllm-qa.json, a markdown table and a chart (speechllm-qa.png).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from math import comb
from pathlib import Path

import numpy as np
from rich.console import Console
from wikispoken import RESULTS

from speechrag.assets import cache_dir
from speechrag.audio import load_query_audio, read_span
from speechrag.corpus.build import load_corpus
from speechrag.corpus.qa import QA_FILE, contains
from speechrag.metrics import wer
from speechrag.progress import progress_bar
from speechrag.timestamps import mmss

TASKS = ("spoken_qa", "spoken_question", "asr")
ANSWER_TOKENS = 24


def mcnemar(a: list[bool], b: list[bool]) -> float:
    """Exact two-sided McNemar p-value of paired right/wrong outcomes."""
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


class Data:
    """The test corpus's questions, passages (audio span and text) and distractors."""

    def __init__(self, every: int, limit: int) -> None:
        root = cache_dir() / "bench" / "wikispoken-test-100"
        if not (root / QA_FILE).exists():
            sys.exit(f"{root}: no WikiSpoken-QA questions; run benchmarks/answers.py first")
        self.root = root
        corpus = load_corpus(root)
        self.passages = {m["passage_id"]: m for m in corpus.manifest}
        qs = [json.loads(line) for line in (root / QA_FILE).read_text().splitlines()]
        self.questions = qs[::every][:limit or None]
        ids = sorted(self.passages)
        self.shown: dict[str, list[str]] = {}
        for q in self.questions:  # the gold passage and one other, seeded per question
            rng = random.Random(f"0:{q['id']}")
            other = rng.choice([i for i in ids if i != q["passage_id"]])
            order = [other, q["passage_id"]]
            rng.shuffle(order)
            self.shown[q["id"]] = order
        self._audio: dict[str, np.ndarray] = {}

    def audio(self, pid: str) -> np.ndarray:
        if pid not in self._audio:
            m = self.passages[pid]
            self._audio[pid] = read_span(self.root / m["audio"], m["start"], m["end"])
        return self._audio[pid]

    def label(self, pid: str) -> str:
        m = self.passages[pid]
        return f"{Path(m['audio']).name}, {mmss(m['start'])}-{mmss(m['end'])}"

    def question_audio(self, q: dict) -> np.ndarray:
        return load_query_audio(self.root / q["audio"])


def _read(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {x["id"]: x for x in map(json.loads, path.read_text().splitlines())}


def run_projector(name: str, path: Path, data: Data, tasks: list[str], folder: Path) -> None:
    from speechrag.models.speechllm import SPEECH
    from speechrag.speech_answer import SpeechAnswerer

    answerer = SpeechAnswerer(path)
    for task in tasks:
        out = folder / f"{name}-{task}.jsonl"
        done = _read(out)
        items = ([{"id": pid} for pid in sorted({q["passage_id"] for q in data.questions})]
                 if task == "asr" else data.questions)
        todo = [x for x in items if x["id"] not in done]
        bar = progress_bar(Console(stderr=True))
        with bar, open(out, "a") as f:
            t = bar.add_task(f"{name} {task}", total=len(todo))
            for x in todo:
                t0 = time.perf_counter()
                if task == "asr":
                    speech = answerer.speech(data.audio(x["id"]))
                    model = answerer.model
                    embeds, _ = model.embed_prompt(
                        model.prompt(f"{SPEECH}\nCan you transcribe this audio?"), [speech])
                    got = model.llm.decode(model.llm.greedy(embeds[None], 400))
                    line = {"id": x["id"], "hypothesis": got,
                            "reference": data.passages[x["id"]]["text"]}
                else:
                    shown = data.shown[x["id"]]
                    labels = [data.label(p) for p in shown]
                    if task == "spoken_qa":
                        prompt = answerer.prompt(x["text"], None, labels, [None, None],
                                                 [data.audio(p) for p in shown], ANSWER_TOKENS)
                    else:
                        prompt = answerer.prompt(None, data.question_audio(x), labels,
                                                 [data.passages[p]["text"] for p in shown],
                                                 [None, None], ANSWER_TOKENS)
                    got = "".join(answerer.stream(prompt, ANSWER_TOKENS))
                    line = {"id": x["id"], "kind": x["kind"], "gold": x["gold"],
                            "answer": got, "correct": contains(got, x["gold"]),
                            "prompt_tokens": prompt.tokens}
                line["seconds"] = time.perf_counter() - t0
                f.write(json.dumps(line) + "\n")
                f.flush()
                bar.advance(t)


def run_baselines(llm_name: str, data: Data, tasks: list[str], folder: Path) -> None:
    """The same LLM in PyTorch reading text: Whisper base's transcripts (cascade) and the
    passages' own text (clean)."""
    import torch

    from speechrag.models.torch_llm import load_frozen_llm
    from speechrag.rag import speech_prompt
    from speechrag.retrievers.cascade import CascadeConfig, Transcriber

    llm = load_frozen_llm(llm_name)
    asr = Transcriber(CascadeConfig(whisper="whisper-base"))
    heard: dict[str, str] = {}

    def transcript(pid: str) -> str:
        if pid not in heard:
            heard[pid] = asr.transcribe(data.audio(pid))
        return heard[pid]

    for row in ("cascade", "clean"):
        for task in [t for t in tasks if t != "asr"]:
            if row == "clean" and task == "spoken_question":
                continue  # a spoken question has no clean text; its cascade row is the peer
            out = folder / f"{row}-{task}.jsonl"
            done = _read(out)
            todo = [q for q in data.questions if q["id"] not in done]
            bar = progress_bar(Console(stderr=True))
            with bar, open(out, "a") as f:
                t = bar.add_task(f"{row} {task}", total=len(todo))
                for q in todo:
                    t0 = time.perf_counter()
                    shown = data.shown[q["id"]]
                    texts = [transcript(p) if row == "cascade" and task == "spoken_qa"
                             else data.passages[p]["text"] for p in shown]
                    question = asr.transcribe(data.question_audio(q)) \
                        if task == "spoken_question" else q["text"]
                    system, user = speech_prompt(question, [data.label(p) for p in shown],
                                                 texts)
                    ids = llm.ids(llm.chat_text(system, user))
                    got = llm.decode(llm.greedy(llm.embed(torch.tensor([ids])), ANSWER_TOKENS))
                    f.write(json.dumps({"id": q["id"], "kind": q["kind"], "gold": q["gold"],
                                        "answer": got, "correct": contains(got, q["gold"]),
                                        "prompt_tokens": len(ids),
                                        "seconds": time.perf_counter() - t0}) + "\n")
                    f.flush()
                    bar.advance(t)


def summarize(folder: Path, data: Data, compare: list[str] | None) -> dict:
    wanted = {q["id"] for q in data.questions}
    rows: dict[str, dict] = {}
    for path in sorted(folder.glob("*.jsonl")):
        name, task = path.stem.rsplit("-", 1)
        lines = [x for x in _read(path).values()
                 if x["id"] in wanted or (task == "asr" and x["id"] in data.passages)]
        if not lines:
            continue
        row = rows.setdefault(name, {"run": name})
        if task == "asr":
            row["asr_wer"] = wer([x["reference"] for x in lines],
                                 [x["hypothesis"] for x in lines])
            row["asr_n"] = len(lines)
        else:
            row[f"{task}_acc"] = float(np.mean([x["correct"] for x in lines]))
            row[f"{task}_n"] = len(lines)
            row[f"{task}_seconds_p50"] = float(np.median([x["seconds"] for x in lines]))
    tests = {}
    if compare:
        a, b = compare
        for task in ("spoken_qa", "spoken_question"):
            ra, rb = _read(folder / f"{a}-{task}.jsonl"), _read(folder / f"{b}-{task}.jsonl")
            both = sorted(set(ra) & set(rb) & wanted)
            if both:
                tests[task] = {"a": a, "b": b, "n": len(both), "p_mcnemar": mcnemar(
                    [ra[i]["correct"] for i in both], [rb[i]["correct"] for i in both])}
    return {"date": time.strftime("%Y-%m-%d"), "questions": len(data.questions),
            "rows": list(rows.values()), "tests": tests}


def markdown(report: dict) -> str:
    def pct(r: dict, key: str) -> str:
        return f"{100 * r[key]:.1f} ({r[key.replace('_acc', '_n')]})" if key in r else "-"

    out = [f"{report['questions']} WikiSpoken-QA questions (test passages, evaluation "
           "voices); accuracy % (n).", "",
           "| run | spoken passages + written question | written passages + spoken "
           "question | WER of its transcripts |", "|---|---|---|---|"]
    for r in report["rows"]:
        w = f"{100 * r['asr_wer']:.1f}" if "asr_wer" in r else "-"
        out.append(f"| {r['run']} | {pct(r, 'spoken_qa_acc')} | "
                   f"{pct(r, 'spoken_question_acc')} | {w} |")
    for task, t in report["tests"].items():
        out.append(f"\n{task}: {t['a']} vs {t['b']} on {t['n']} questions, exact McNemar "
                   f"p = {t['p_mcnemar']:.3g}")
    return "\n".join(out)


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4))
    x = np.arange(len(rows))
    for i, (key, label) in enumerate((("spoken_qa_acc", "spoken passages"),
                                      ("spoken_question_acc", "spoken question"))):
        at = x + (i - 0.5) * 0.4
        measured = [key in r for r in rows]
        bars = ax.bar(at[measured], [100 * r[key] for r in rows if key in r], 0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)  # a measured zero shows as "0.0"
        for where in at[[not m for m in measured]]:  # not run: say so, not a zero bar
            ax.text(where, 0.5, "n/a", ha="center", va="bottom", fontsize=7,
                    color=bars.patches[0].get_facecolor() if bars.patches else "grey")
    ax.set_xticks(x, [r["run"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("answer accuracy (%)")
    ax.set_title("SpeechLLM on WikiSpoken-QA (test passages, evaluation voices)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=[], help="NAME=PATH of a projector")
    ap.add_argument("--baselines", action="store_true")
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b", help="the baselines' LLM")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    ap.add_argument("--out", type=Path, default=RESULTS / "speechllm-qa.json")
    args = ap.parse_args(argv)
    data = Data(args.every, args.limit)
    folder = cache_dir() / "bench" / "speechllm" / args.llm  # one LLM per table
    folder.mkdir(parents=True, exist_ok=True)
    for spec in args.runs:
        name, _, path = spec.partition("=")
        if not path or name in ("cascade", "clean"):
            sys.exit(f"--runs {spec!r}: give NAME=PATH (NAME not cascade or clean)")
        from speechrag.models.trained import read_checkpoint

        llm = read_checkpoint(path, "speechllm")["config"]["llm"]
        if llm != args.llm:
            sys.exit(f"{path}: a projector for {llm}; this table's LLM is {args.llm} (--llm)")
        run_projector(name, Path(path), data, args.tasks, folder)
    if args.baselines:
        run_baselines(args.llm, data, args.tasks, folder)
    report = summarize(folder, data, args.compare)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    chart(report, args.out.with_suffix(".png"))
    print(markdown(report))


if __name__ == "__main__":
    main()
