"""Train CLSR: ``speechrag train --arch clsr --corpus DIR [--config FILE] [--out DIR]``.

Stage 1 is ASR pretraining of the projection, CIF and decoder on frozen, cached
Whisper states ((1 - a) CE + a MAE, plus the auxiliary CE on CIF embeddings);
stage 2 adds the contrastive loss against the passage's questions (both query
kinds) through the frozen text encoder (CLSR's L_total). Validation runs on
train-split passages held out by hash (never dev or test), spoken by the training
voices: free-running WER and query -> utterance R@1. The loop, checkpoints and
curves are the shared training app's (:mod:`speechrag.train.loop`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechrag.metrics import wer
from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.models.text_encoder import TextEncoder
from speechrag.train.data import Batches, Utterance, to_device, train_vocabulary
from speechrag.train.loop import Arch, run


def build(config: ClsrConfig, text: TextEncoder) -> ClsrModel:
    """A fresh model over the train split's vocabulary; the CIF variant's decoder starts
    from Whisper's with ``cif.decoder.init = "whisper"`` (a resumed run or ``--init``
    then loads its own weights over it)."""
    model = ClsrModel.build(config, text,
                            {"vocab_ids": train_vocabulary(text, config.vocab_min_count)})
    if (config.cif or {}).get("decoder", {}).get("init") == "whisper":
        model.init_decoder_from_whisper()  # type: ignore[attr-defined]
    return model


@torch.no_grad()
def validate(model: ClsrModel, batches: Batches, val: list[Utterance],
             device: torch.device) -> dict:
    """Free-running WER (the aligner counts tokens itself) and query -> utterance R@1 on
    the held-out passages."""
    val = [u for u in val if u.kind == "passage"]
    model.eval()
    hyps, vecs, queries = [], [], []
    for i in range(0, len(val), batches.batch_size):
        chunk = val[i:i + batches.batch_size]
        b = to_device(batches.collate(chunk), device)
        out = model(b["states"], b["state_mask"])
        hyps += model.transcripts(out)
        vecs.append(out["speech_emb"])
        queries.append(model.query_embeddings(b["query_ids"], b["query_lengths"]))
    speech, q = torch.cat(vecs), torch.cat(queries)
    r1 = float((torch.argmax(q @ speech.T, dim=1) == torch.arange(len(q), device=device))
               .float().mean())
    model.train()
    return {"val_wer": wer([u.text for u in val], hyps), "val_r1": r1, "val_n": len(val),
            "val_example": hyps[0][:200] if hyps else ""}


CLSR = Arch("clsr", ClsrConfig, build, validate, __doc__)


def main(argv: list[str] | None = None) -> Path:
    """Train (or resume) CLSR and return the path of the shippable ``model.pt``."""
    return run(CLSR, argv)
