"""How the answer prompt, the default LLM and the context budget were chosen, on
train-split passages only (the project's validation rule: test and dev passages are never
used to tune anything).

    .venv/bin/python benchmarks/answer_prompt.py [--llms qwen2.5-coder-1.5b qwen2.5-coder-0.5b]
    .venv/bin/python benchmarks/answer_prompt.py --budgets 0 600 400 300 200

100 train passages (the last by passage id) indexed as text (clean passages: the upper
bound, where the LLM alone decides), WikiSpoken-QA questions from them (every 10th, 32),
k = 5, greedy.
Two instructions: "cite" asks to cite the passages used as [1], [2]; "answer [n]" (the
shipped one) asks for the answer in a few words, then its passage number, with an example.

``--budgets``: the passages' token budget (``speechrag ask --context-tokens``; 0 = every
word) on speech: the same 100 train passages spoken by two training voices (flite kal
and awb) as 10 long-form episodes, indexed by the default cascade, every 8th question
(at most 40; ``--every``, ``--limit``), k = 5, the default LLM. Reported: answer
accuracy, the share of prompts that still hold the gold string, prompt tokens and time to
first token (medians).
"""

from __future__ import annotations

import argparse
import statistics
import time

import speechrag
import speechrag.rag as rag
from speechrag.assets import cache_dir
from speechrag.corpus.qa import contains, questions_for
from speechrag.corpus.wikispoken import passages
from speechrag.llm import LLMConfig, load_llm

PROMPTS = {
    "cite": ("You answer a question from numbered passages transcribed from recordings. Use "
             "only the passages. Answer in a few words, and cite the passages you used as "
             "[1], [2] and so on. If the passages do not answer the question, reply exactly: "
             f"{rag.NO_ANSWER}"),
    "answer [n]": rag.SYSTEM,
}


def budgets(values: list[int], every: int = 8, limit: int = 40) -> None:
    from speechrag.corpus.build import CorpusConfig, build_corpus, load_corpus
    from speechrag.corpus.wikispoken import load_passages

    root = cache_dir() / "bench" / "wikispoken-train-100"
    build_corpus(CorpusConfig(split="train", passages=100, voices=("flite:kal", "flite:awb")),
                 root)
    corpus = load_corpus(root)
    ix = cache_dir() / "bench" / "train-100-audio" / "index-cascade"
    if not (ix / "index.json").exists():
        speechrag.index_audio(corpus.audio_files(), ix, model="cascade")
    described = {p.passage_id: p.description for p in load_passages()}
    seen: set[str] = set()
    qs = []
    for m in corpus.manifest:
        if m["passage_id"] not in seen:
            seen.add(m["passage_id"])
            qs += questions_for({**m, "description": described.get(m["passage_id"], "")})
    qs = qs[::every][:limit or None]
    llm = load_llm(LLMConfig())
    print(f"| context tokens | answer accuracy | gold in the prompt | prompt tokens p50 | "
          f"first token p50 | ({len(qs)} questions) |")
    print("|---|---|---|---|---|---|")
    for budget in values:
        asker = rag.Asker(ix, llm, context_tokens=budget)
        correct, kept, tokens, first = 0, 0, [], []
        for q in qs:
            stream = asker.stream(q["text"], k=5)
            passages = stream.prompt.messages[-1]["content"]
            answer = stream.text()
            correct += contains(answer.text, q["gold"])
            kept += contains(passages, q["gold"])
            tokens.append(answer.prompt_tokens)
            first.append(answer.timings["first_token_ms"] / 1000)
        print(f"| {budget or 'every word'} | {correct / len(qs):.2f} | {kept / len(qs):.2f} | "
              f"{statistics.median(tokens):.0f} | {statistics.median(first):.1f} s | |",
              flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llms", nargs="+", default=["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"])
    ap.add_argument("--budgets", nargs="+", type=int,
                    help="compare these context budgets (tokens; 0 = every word) instead")
    ap.add_argument("--every", type=int, default=8, help="--budgets: every N-th question")
    ap.add_argument("--limit", type=int, default=40, help="--budgets: at most N (0: all)")
    args = ap.parse_args(argv)
    if args.budgets:
        budgets(args.budgets, args.every, args.limit)
        return
    chosen = sorted(passages("train"), key=lambda p: p.passage_id)[-100:]
    ix = cache_dir() / "bench" / "train-100-clean-text"
    if not (ix / "index.json").exists():
        speechrag.index_texts([(p.passage_id, p.text) for p in chosen], ix)
    qs = [q for p in chosen for q in questions_for(
        {"passage_id": p.passage_id, "title": p.title, "description": p.description,
         "text": p.text})][::10][:32]
    print("| LLM | prompt | answer accuracy | answers citing a passage | seconds per answer |")
    print("|---|---|---|---|---|")
    for name in args.llms:
        asker = rag.Asker(ix, load_llm(LLMConfig(model=name)))
        for label, system in PROMPTS.items():
            rag.SYSTEM = system
            t0, correct, cites = time.perf_counter(), 0, 0
            for q in qs:
                answer = asker.ask(q["text"], k=5)
                correct += contains(answer.text, q["gold"])
                cites += bool(answer.citations)
            print(f"| {name} | {label} | {correct / len(qs):.2f} | {cites / len(qs):.2f} | "
                  f"{(time.perf_counter() - t0) / len(qs):.1f} |", flush=True)


if __name__ == "__main__":
    main()
