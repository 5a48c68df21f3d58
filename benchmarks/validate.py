"""Score SEAL and CLSR checkpoints side by side on a train corpus's held-out passages,
with every question: the measure to pick a checkpoint by (never the test table).

    .venv/bin/python benchmarks/validate.py --corpus TRAIN_CORPUS --features FEATURES \\
        seal runs/seal-d/best.pt [CHECKPOINT ...] [--fuse 0.3 0.5 ...] [--hybrid 0.3 ...]

The held-out passages are the training app's (a hash of the passage id, the first
``--max-val`` of them), so a run on a bigger build of the same corpus holds out a
superset of a smaller build's. The training log scores one question per passage; this
scores all of them (written questions -> passage speech, spoken questions -> passage
text, transcript -> passage speech), so two checkpoints differ by more than a query's
worth of noise; for CLSR also the free-running WER of its rough transcripts. ``seal`` is
the checkpoint shipped in the package.

``cascade`` (or ``cascade-beam5``) among the checkpoints adds the baseline on the same
passages: faster-whisper transcribes each held-out passage and spoken question (2 cores,
greedy: 91 passages in 3 minutes), MiniLM embeds the transcripts, and the row gets the
same measures and the WER of Whisper's transcripts.

``--hybrid W ...`` adds, for every model that writes transcripts (CLSR, the cascade), a
row per weight for hybrid search (speechrag.lexical): each written question scored by its
cosine + W x the character n-gram TF-IDF match of its words to each passage's transcript
(IDF over the held-out passages' transcripts). The other columns repeat the model's own.

``--fuse W ...`` with two checkpoints adds a row per weight for late fusion of the two:
every score is W x the first model's cosine + (1 - W) x the second's, which is what one
index of the two unit embeddings concatenated (scaled by sqrt(W) and sqrt(1 - W)) would
rank by. Both models read the same Whisper states, so fusion costs the second model's
head and no second encoder pass.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from speechrag.corpus.build import load_corpus
from speechrag.lexical import LexicalScorer
from speechrag.metrics import mrr, ranks_of_truth, recall_at, wer
from speechrag.models.clsr import ClsrModel
from speechrag.models.seal import SealModel
from speechrag.models.text_encoder import TextEncoder
from speechrag.retrievers import TRAINED_DIR
from speechrag.retrievers.trained import checkpoint_arch
from speechrag.train.data import (
    Utterance,
    cache_states,
    cap_validation,
    held_out,
    read_span,
    training_utterances,
)


def recall_mrr(scores: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """scores (Q, P), truth (Q,) -> (R@1 in percent, MRR), by the project's metrics."""
    ranks = ranks_of_truth(scores.float().numpy(), truth.tolist())
    return 100 * recall_at(ranks, 1), mrr(ranks)


def _row(val: list[Utterance], questions: dict[str, list[str]],
         speech: Callable[[list[Utterance]], torch.Tensor],
         text: Callable[[list[str]], torch.Tensor], heard: list[str]) -> dict:
    """One system's row: ``speech`` embeds utterances (N, E), ``text`` embeds strings
    (N, E); ``heard`` receives its transcripts of the passages, if it makes them, while
    ``speech`` embeds those. Scores every written question against passage speech, every
    spoken question against passage text, each passage's text against its speech."""
    passages = [u for u in val if u.kind == "passage"]
    spoken = [u for u in val if u.kind == "query"]
    where = {u.passage_id: i for i, u in enumerate(passages)}
    s = speech(passages)  # (P, E); fills ``heard``
    t = text([u.text for u in passages])  # (P, E)
    asked = [(q, where[p]) for p in where for q in questions.get(p, [])]
    row: dict = {"passages": len(passages), "questions": len(asked)}
    if heard:
        row["wer"] = 100 * wer([u.text for u in passages], heard)
        row["heard"] = list(heard)
        row["questions_text"] = [q for q, _ in asked]
    row["scores"] = {"written": text([q for q, _ in asked]) @ s.T, "transcript": t @ s.T}
    row["truth"] = {"written": torch.tensor([i for _, i in asked]),
                    "transcript": torch.arange(len(passages))}
    if spoken:
        row["spoken"] = len(spoken)
        row["scores"]["spoken"] = speech(spoken) @ t.T
        row["truth"]["spoken"] = torch.tensor([where[u.passage_id] for u in spoken])
    return _measure(row)


@torch.no_grad()
def score(model: SealModel | ClsrModel, val: list[Utterance], cache: Path,
          questions: dict[str, list[str]]) -> dict[str, float]:
    """Validation metrics of one model; states come from ``cache`` (S, D) per utterance."""
    decoded: list[str] = []  # CLSR's rough transcripts of the passages

    def speech(utts: list[Utterance]) -> torch.Tensor:
        out = []
        transcribe = utts and utts[0].kind == "passage"
        for u in utts:
            states = torch.load(cache / f"{u.key}.pt", weights_only=True).float()[None]
            mask = torch.ones(states.shape[:2], dtype=torch.bool)
            result = (model(states, mask, document=u.kind == "passage")
                      if isinstance(model, ClsrModel) else model(states, mask))
            out.append(result["speech_emb"])
            if transcribe and "token_ids" in result:
                ids = result["token_ids"][0][: int(result["n_tokens"][0])]
                decoded.append(model.text.model.tokenizer.decode(ids.tolist(),
                                                                 skip_special_tokens=True))
        return torch.cat(out)

    return _row(val, questions, speech, model.encode_text, decoded)


@torch.no_grad()
def score_cascade(val: list[Utterance], questions: dict[str, list[str]],
                  beam_size: int = 1) -> dict[str, float]:
    """The cascade's validation metrics on the same utterances and questions as
    :func:`score`: Whisper's transcript of each passage (and spoken question), embedded
    by the cascade's text encoder."""
    from rich.console import Console

    from speechrag.progress import progress_bar
    from speechrag.retrievers.cascade import CascadeConfig, CascadeRetriever

    cascade = CascadeRetriever(CascadeConfig(beam_size=beam_size))
    transcripts: list[str] = []

    def text(texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(cascade.encode_text(texts))

    def speech(utts: list[Utterance]) -> torch.Tensor:
        heard = []
        with progress_bar(Console(stderr=True)) as progress:
            task = progress.add_task(f"cascade: transcribing {utts[0].kind}s", total=len(utts))
            for u in utts:
                heard.append(cascade.asr.transcribe(read_span(u)))
                progress.advance(task)
        if utts[0].kind == "passage":
            transcripts.extend(heard)
        return text(heard)

    return _row(val, questions, speech, text, transcripts)


def _measure(row: dict) -> dict:
    """Fill R@1 and MRR of each query kind from ``row["scores"]`` and ``row["truth"]``."""
    row["written_r1"], row["written_mrr"] = recall_mrr(row["scores"]["written"],
                                                        row["truth"]["written"])
    row["transcript_r1"], _ = recall_mrr(row["scores"]["transcript"],
                                          row["truth"]["transcript"])
    if "spoken" in row["scores"]:
        row["spoken_r1"], row["spoken_mrr"] = recall_mrr(row["scores"]["spoken"],
                                                          row["truth"]["spoken"])
    return row


def _print_row(name: str, r: dict) -> None:
    wer_cell = f"{r['wer']:.1f}" if "wer" in r else "-"
    spoken = (f"{r['spoken_r1']:.1f} | {r['spoken_mrr']:.3f}" if "spoken_r1" in r
              else "- | -")  # a corpus without spoken questions
    print(f"| {name} | {r['written_r1']:.1f} | {r['written_mrr']:.3f} | {spoken} "
          f"| {r['transcript_r1']:.1f} | {wer_cell} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+",
                    help="SEAL or CLSR checkpoints (.pt), 'seal', or 'cascade' / "
                         "'cascade-beam5' (the baseline)")
    ap.add_argument("--corpus", type=Path, required=True, help="a train-split corpus")
    ap.add_argument("--features", type=Path, required=True, help="the runs' state cache")
    ap.add_argument("--val-fraction", type=float, default=0.04)
    ap.add_argument("--max-val", type=int, default=64)
    ap.add_argument("--fuse", nargs="*", type=float, default=[],
                    help="with two checkpoints: rows for W x first + (1 - W) x second")
    ap.add_argument("--hybrid", nargs="*", type=float, default=[],
                    help="rows for hybrid search at each lexical weight W: written questions "
                         "scored by cosine + W x their match to each passage's transcript")
    args = ap.parse_args(argv)
    if args.fuse and len(args.checkpoints) != 2:
        ap.error("--fuse needs exactly two checkpoints")

    corpus = load_corpus(args.corpus)
    _, val = held_out(training_utterances(corpus), args.val_fraction)
    val = cap_validation(val, args.max_val)
    questions: dict[str, list[str]] = {}
    for q in corpus.queries:
        questions.setdefault(q["passage_id"], []).append(q["text"])
    text = TextEncoder()
    print("| checkpoint | written R@1 % | written MRR | spoken -> text R@1 % | spoken MRR "
          "| transcript R@1 % | WER % |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in args.checkpoints:
        if name in ("cascade", "cascade-beam5"):
            r = score_cascade(val, questions, beam_size=5 if name.endswith("beam5") else 1)
            rows.append(r)
            _print_row(name, r)
            continue
        path = TRAINED_DIR / "seal.pt" if name == "seal" else Path(name)
        model_cls = SealModel if checkpoint_arch(path) == "seal" else ClsrModel
        model = model_cls.load(path, text)
        cache = cache_states(val, model.config.whisper, args.features,
                             trained_top=model.config.encoder_layers)
        r = score(model, val, cache, questions)
        rows.append(r)
        _print_row(name, r)
    for name, r in zip(args.checkpoints, rows if args.hybrid else [], strict=False):
        if "heard" not in r:
            print(f"| {name} + hybrid | (no transcripts) | | | | | |")
            continue
        ids = [str(i) for i in range(len(r["heard"]))]
        lexical = LexicalScorer(ids, r["heard"])  # fitted once, the same for every weight
        match = torch.stack([torch.from_numpy(lexical.scores(q, ids))
                             for q in r["questions_text"]])  # (Q, P)
        for w in args.hybrid:
            mixed = {"scores": {**r["scores"], "written": r["scores"]["written"] + w * match},
                     "truth": r["truth"]}
            _print_row(f"{name} + hybrid {w:g}", _measure(mixed))
    for w in args.fuse:
        a, b = rows
        fused = {"scores": {k: w * a["scores"][k] + (1 - w) * b["scores"][k]
                            for k in a["scores"]}, "truth": a["truth"]}
        _print_row(f"{w:g} x {args.checkpoints[0]} + {1 - w:g} x {args.checkpoints[1]}",
                   _measure(fused))
    print(f"\n{r['passages']} held-out passages, {r['questions']} written questions, "
          f"{r.get('spoken', 0)} spoken questions ({args.corpus})")


if __name__ == "__main__":
    main()
