"""The answer benchmark: how much each retriever is worth to the final answer.

    .venv/bin/python benchmarks/answers.py [--llm qwen2.5-coder-1.5b] [--every N] [--limit N]
        [--rows closed clean cascade clsr clsr+seal clsr-asr clsr-speech] [--forms written spoken]
        [--ks 5 3 1] [--context-tokens 400] [--speech-llm PATH] [--table-only]

WikiSpoken-QA (speechrag.corpus.qa) over the 100-passage WikiSpoken test corpus in the
evaluation voices (the one benchmarks/wikispoken.py builds): 319 questions whose gold
answers are short strings spoken in one passage, written and spoken. Each row answers
them with the same LLM (greedy, the CLI's prompt and answer length):

- closed: the LLM alone, no hits (a spoken question: its Whisper transcript);
- clean: the passages' text indexed with ``speechrag index-text`` (the upper bound);
- cascade, clsr, clsr+seal: the long-form recordings indexed by that model, the text
  stored with each hit as context (``--context stored``);
- clsr-asr: the clsr index with ``--context asr`` (the hits' windows transcribed by
  Whisper when asked, kept in the index for the next question);
- clsr-speech: the clsr index with ``--context speech`` and ``--speech-llm``: the hits'
  audio and a spoken question go into the SpeechLLM as speech (no ASR anywhere); it
  answers with the projector's own LLM (``--speech-llm``, default the shipped one), so
  compare it in a table whose ``--llm`` is that LLM.

Metrics: answer accuracy (the normalized gold string is in the answer), citation
accuracy (a cited hit overlaps the gold passage), the share answered "the recordings do
not say", and latency: retrieve, first token and total (ms, from the question), tokens/s.

``--context-tokens`` is the passages' budget in the prompt (``speechrag ask``'s option;
default the CLI's; 0 = every word of every hit, as the first runs had).

Every answer is kept as it is made
(``<cache>/bench/answers/<llm>[-ctx<N>]/<row>-<form>-k<k>.jsonl``, no suffix for 0),
so a run that is stopped resumes where it stopped; the work is done in the order of
``--ks``, ``--forms``, ``--rows``, so a partial run has the k=5 written rows first. Report:
benchmarks/results/answers/<llm>.json, a markdown table and a chart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from wikispoken import RESULTS

import speechrag
from speechrag.assets import cache_dir
from speechrag.audio import load_query_audio
from speechrag.corpus.build import CorpusConfig, build_corpus, load_corpus
from speechrag.corpus.qa import QA_FILE, contains, write_questions
from speechrag.index import TRANSCRIPTS, Hit
from speechrag.llm import DEFAULT_LLM, LLMConfig, load_llm
from speechrag.progress import progress_bar
from speechrag.rag import (
    CONTEXT_TOKENS,
    AnswerStream,
    Asker,
    Prompt,
    Retrieved,
    messages_for,
    says_no_answer,
)

ROWS = ("closed", "clean", "cascade", "clsr", "clsr+seal", "clsr-asr", "clsr-speech")
INDEX_OF = {"clean": "index-clean-text", "cascade": "index-cascade", "clsr": "index-clsr",
            "clsr+seal": "index-clsr_seal", "clsr-asr": "index-clsr", "clsr-speech": "index-clsr"}
CONTEXT_OF = {"clsr-asr": "asr", "clsr-speech": "speech"}  # rows on the clsr index
OUT = RESULTS / "answers"


def corpus_and_questions(passages: int) -> tuple[object, list[dict]]:
    config = CorpusConfig(split="test", passages=passages,
                          voices=("flite:slt", "festival:kal_diphone"), layout="episodes")
    root = cache_dir() / "bench" / f"wikispoken-test-{passages}"
    build_corpus(config, root)
    qa = root / QA_FILE
    if not qa.is_file():
        print("speaking the questions ...", flush=True)
        write_questions(root, workers=2)
    rows = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    return load_corpus(root), [{**q, "audio": str(root / q["audio"])} for q in rows]


def ensure_index(row: str, corpus, work: Path, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """The row's index, built if missing (the same ones benchmarks/wikispoken.py makes).
    ``clsr-asr`` gets its own copy of the clsr index in the run's ``folder``, made before
    its first answer, so what Whisper transcribes (and stores) starts from nothing and
    its cost is counted from the first question."""
    if row == "clsr-asr":
        own = folder / "index-clsr-asr"
        if not (own / "index.json").exists():
            shutil.rmtree(own, ignore_errors=True)
            shutil.copytree(ensure_index("clsr", corpus, work, folder), own,
                            ignore=shutil.ignore_patterns(f"{TRANSCRIPTS}.lance"))
        return own
    path = work / INDEX_OF[row]
    if (path / "index.json").exists():
        return path
    print(f"indexing for {row} ...", flush=True)
    if row == "clean":
        docs = {m["passage_id"]: m["text"] for m in corpus.manifest}
        speechrag.index_texts(sorted(docs.items()), path)
    else:
        model = "clsr" if row in CONTEXT_OF else row
        speechrag.index_audio(corpus.audio_files(), path, model=model)
    return path


def gold_hit(hit: dict, q: dict, gold: dict[str, list[dict]]) -> bool:
    """A hit overlaps the gold passage: the document itself, or a span of its audio."""
    if hit["start"] is None:
        return hit["source"] == q["passage_id"]
    return any(g["audio"] == hit["source"] and hit["start"] < g["end"] and hit["end"] > g["start"]
               for g in gold[q["passage_id"]])


def retrievals(row: str, form: str, questions: list[dict], asker: Asker | None,
               whisper, path: Path, k: int) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Each question's words, hits (top ``k``) and retrieval timings, computed once per
    row and form and kept in ``path`` (resumable)."""
    done = _read(path)
    todo = [q for q in questions if q["id"] not in done]
    if todo:
        bar = progress_bar(Console(stderr=True))
        with bar, open(path, "a") as f:
            task = bar.add_task(f"retrieving {row} {form}", total=len(todo))
            for q in todo:
                if asker is None:  # closed book: only the question's words
                    t0 = time.perf_counter()
                    words = q["text"] if form == "written" else \
                        whisper.transcribe(load_query_audio(q["audio"]))
                    got = Retrieved(words, [], None if form == "written" else words,
                                    {"retrieve_ms": (time.perf_counter() - t0) * 1000})
                elif form == "written":
                    got = asker.retrieve(q["text"], k=k)
                else:
                    got = asker.retrieve(audio=load_query_audio(q["audio"]), k=k)
                line = {"id": q["id"], "words": got.words, "heard": got.heard,
                        "hits": [h.to_dict() for h in got.hits], "timings": got.timings}
                f.write(json.dumps(line) + "\n")
                f.flush()
                done[q["id"]] = line
                bar.advance(task)
    return done


def _read(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill: redone
            continue
        out[r["id"]] = r
    return out


def answer_all(row: str, form: str, k: int, questions: list[dict], got: dict[str, dict],
               asker: Asker | None, llm, gold: dict, path: Path) -> None:  # type: ignore[no-untyped-def]
    done = _read(path)
    todo = [q for q in questions if q["id"] not in done]
    if not todo:
        return
    bar = progress_bar(Console(stderr=True))
    with bar, open(path, "a") as f:
        task = bar.add_task(f"answering {row} {form} k={k}", total=len(todo))
        for q in todo:
            r = got[q["id"]]
            if asker is None:  # the closed-book prompt, streamed as `ask` streams
                messages = messages_for(r["words"], [], [])
                prompt = Prompt(messages, [], 0, llm.count_tokens(messages))
                t0 = time.perf_counter() - r["timings"]["retrieve_ms"] / 1000
                stream = AnswerStream(llm, r["words"], Retrieved(r["words"], [], r["heard"]),
                                      prompt, 96, "stored", t0, dict(r["timings"]))
            else:
                hits = [Hit(**h) for h in r["hits"][:k]]
                # a SpeechLLM hears the spoken question itself (clsr-speech)
                audio = load_query_audio(q["audio"]) \
                    if form == "spoken" and asker.speech_question else None
                stream = asker.stream(audio=audio, retrieved=Retrieved(
                    r["words"], hits, r["heard"], dict(r["timings"])))
            answer = stream.text()
            text, timings, prompt_tokens = answer.text, answer.timings, answer.prompt_tokens
            cites = [c.n for c in answer.citations]  # passages: overlapping hits are one
            spans = [{"source": c.source, "start": c.start, "end": c.end}
                     for c in answer.citations]
            hit_dicts = r["hits"][:k]
            line = {"id": q["id"], "kind": q["kind"], "gold": q["gold"], "words": r["words"],
                    "answer": text, "correct": contains(text, q["gold"]),
                    "cited": cites,
                    "cite_ok": any(gold_hit(span, q, gold) for span in spans),
                    "gold_in_hits": any(gold_hit(h, q, gold) for h in hit_dicts),
                    # the gold string is in the text the LLM read (after --context-tokens)
                    "gold_in_prompt": contains(stream.prompt.messages[-1]["content"], q["gold"]),
                    "no_answer": says_no_answer(text), "prompt_tokens": prompt_tokens,
                    "timings": timings}
            f.write(json.dumps(line) + "\n")
            f.flush()
            bar.advance(task)


def summarize(folder: Path, llm: str, n_questions: int, context_tokens: int) -> dict:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        if path.name.startswith("retrieved-"):
            continue
        row, form, k = path.stem.rsplit("-", 2)
        lines = list(_read(path).values())
        if not lines:
            continue
        for x in lines:  # scored again: the metric may have been fixed since
            x["correct"] = contains(x["answer"], x["gold"])

        def p(key: str, lines: list[dict] = lines) -> float:
            return statistics.median(x["timings"].get(key, 0.0) for x in lines)

        rows.append({
            "row": row, "form": form, "k": int(k[1:]), "n": len(lines),
            "accuracy": float(np.mean([x["correct"] for x in lines])),
            "citation_accuracy": float(np.mean([x["cite_ok"] for x in lines])),
            "cites_any": float(np.mean([bool(x["cited"]) for x in lines])),
            "gold_in_hits": float(np.mean([x["gold_in_hits"] for x in lines])),
            "gold_in_prompt": float(np.mean([x.get("gold_in_prompt", False) for x in lines]))
            if any("gold_in_prompt" in x for x in lines) else None,
            "no_answer": float(np.mean([x["no_answer"] for x in lines])),
            "retrieve_ms_p50": p("retrieve_ms"), "first_token_ms_p50": p("first_token_ms"),
            "total_ms_p50": p("total_ms"), "tokens_per_s_p50": p("tokens_per_s"),
            "prompt_tokens_p50": statistics.median(x["prompt_tokens"] for x in lines),
            "context_ms_p50": p("context_ms"), "transcribe_ms_p50": p("transcribe_ms"),
            "by_kind": {kind: float(np.mean([x["correct"] for x in lines if x["kind"] == kind]))
                        for kind in sorted({x["kind"] for x in lines})},
        })
    order = {r: i for i, r in enumerate(ROWS)}
    rows.sort(key=lambda r: (r["form"] != "written", -r["k"], order.get(r["row"], 99)))
    return {"llm": llm, "questions": n_questions, "context_tokens": context_tokens,
            "date": time.strftime("%Y-%m-%d"), "rows": rows}


def markdown(report: dict) -> str:
    budget = report.get("context_tokens") or "every word"
    out = [f"LLM `{report['llm']}`, context tokens {budget}, {report['questions']} questions "
           "(n = answered so far).",
           "", "| row | question | k | n | answer acc. | citation acc. | gold in hits | "
           "\"do not say\" | first token p50 | total p50 | tokens/s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        out.append(f"| {r['row']} | {r['form']} | {r['k'] if r['row'] != 'closed' else '-'} "
                   f"| {r['n']} | {100 * r['accuracy']:.1f} | "
                   f"{100 * r['citation_accuracy']:.1f} | {100 * r['gold_in_hits']:.1f} | "
                   f"{100 * r['no_answer']:.1f} | {r['first_token_ms_p50'] / 1000:.1f} s | "
                   f"{r['total_ms_p50'] / 1000:.1f} s | {r['tokens_per_s_p50']:.1f} |")
    out += ["", "| row | question | k | gold string in the prompt | retrieve p50 | of which "
            "question transcript (Whisper) | asr context p50 | prompt tokens p50 |",
            "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        in_prompt = "-" if r["gold_in_prompt"] is None else f"{100 * r['gold_in_prompt']:.1f}"
        out.append(f"| {r['row']} | {r['form']} | {r['k'] if r['row'] != 'closed' else '-'} | "
                   f"{in_prompt} | {r['retrieve_ms_p50']:.0f} ms | "
                   f"{r['transcribe_ms_p50']:.0f} ms | {r['context_ms_p50']:.0f} ms | "
                   f"{r['prompt_tokens_p50']:.0f} |")
    return "\n".join(out)


def chart(report: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["k"] == 5 or r["row"] == "closed"]
    if not rows:
        return None
    names = [r for r in ROWS if any(x["row"] == r for x in rows)]
    fig, ax = plt.subplots(figsize=(8, 4))
    forms = [f for f in ("written", "spoken") if any(x["form"] == f for x in rows)]
    width = 0.8 / len(forms)
    for i, form in enumerate(forms):
        acc = [next((100 * x["accuracy"] for x in rows if x["row"] == n and x["form"] == form),
                    0.0) for n in names]
        ax.bar(np.arange(len(names)) + (i - (len(forms) - 1) / 2) * width, acc, width,
               label=f"{form} question")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("answer accuracy (%)")
    budget = report.get("context_tokens") or "every word"
    ax.set_title(f"WikiSpoken-QA, k = 5, LLM {report['llm']}, context tokens {budget}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default=DEFAULT_LLM)
    ap.add_argument("--passages", type=int, default=100)
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ap.add_argument("--every", type=int, default=1,
                    help="only every N-th question (an even sample over all passages)")
    ap.add_argument("--rows", nargs="+", choices=ROWS,
                    default=[r for r in ROWS if r != "clsr-speech"],
                    help="default: all but clsr-speech (it needs a SpeechLLM projector)")
    ap.add_argument("--forms", nargs="+", default=["written", "spoken"],
                    choices=["written", "spoken"])
    ap.add_argument("--ks", nargs="+", type=int, default=[5, 3, 1])
    ap.add_argument("--context-tokens", type=int, default=CONTEXT_TOKENS,
                    help="the passages' token budget in the prompt (0 = every word)")
    ap.add_argument("--speech-llm", default=None,
                    help="clsr-speech's projector (default: the shipped one)")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--tag", default="",
                    help="keep this run's answers apart (e.g. a latency run on an idle machine)")
    args = ap.parse_args(argv)

    name = (args.llm.replace("/", "_") + (f"-ctx{args.context_tokens}"
                                          if args.context_tokens else "")
            + (f"-{args.tag}" if args.tag else ""))
    folder = cache_dir() / "bench" / "answers" / name
    folder.mkdir(parents=True, exist_ok=True)
    corpus, questions = corpus_and_questions(args.passages)
    questions = questions[::args.every]
    if args.limit:
        questions = questions[:args.limit]
    if not args.table_only:
        llm = load_llm(LLMConfig(model=args.llm))
        gold = corpus.gold()  # type: ignore[attr-defined]
        work = cache_dir() / "bench" / f"eval-{args.passages}"
        whisper = None
        for k in args.ks:
            for form in args.forms:
                for row in args.rows:
                    if row == "closed" and k != max(args.ks):
                        continue  # no hits: one closed-book row
                    asker = None
                    if row != "closed":
                        asker = Asker(ensure_index(row, corpus, work, folder), llm,
                                      context=CONTEXT_OF.get(row, "stored"),
                                      context_tokens=args.context_tokens,
                                      speech_llm=(args.speech_llm or True)
                                      if row == "clsr-speech" else None)
                    elif form == "spoken" and whisper is None:
                        from speechrag.retrievers.cascade import CascadeConfig, Transcriber

                        whisper = Transcriber(CascadeConfig())
                    got = retrievals(row, form, questions, asker, whisper,
                                     folder / f"retrieved-{row}-{form}.jsonl", max(args.ks))
                    answer_all(row, form, k, questions, got, asker, llm, gold,
                               folder / f"{row}-{form}-k{k}.jsonl")
    report = summarize(folder, args.llm, len(questions), args.context_tokens)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(report, OUT / f"{name}.png")
    print(markdown(report))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
