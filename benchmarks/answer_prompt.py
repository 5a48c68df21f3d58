"""How the answer prompt and the default LLM were chosen, on train-split passages only
(the project's validation rule: test and dev passages are never used to tune anything).

    .venv/bin/python benchmarks/answer_prompt.py [--llms qwen2.5-coder-1.5b qwen2.5-coder-0.5b]

100 train passages (the last by passage id) indexed as text (clean passages: the upper
bound, where the LLM alone decides), WikiSpoken-QA questions from them (every 10th, 32),
k = 5, greedy.
Two instructions: "cite" asks to cite the passages used as [1], [2]; "answer [n]" (the
shipped one) asks for the answer in a few words, then its passage number, with an example.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llms", nargs="+", default=["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"])
    args = ap.parse_args(argv)
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
