"""Train SEAL: ``speechrag train --arch seal --corpus DIR [--config FILE] [--out DIR]``.

Stage 1 aligns the speech adaptor with the frozen text encoder's states of each
utterance's own transcript (the alignment loss: cosine or Wasserstein, one layer
or several); stage 2 fine-tunes for retrieval, InfoNCE from the passage's questions
(both kinds) to its speech in the shared space, multi-tasked with the alignment
loss. Validation on held-out train passages: query -> utterance R@1 and transcript
-> utterance R@1. The loop, checkpoints and curves are the shared training app's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from speechrag.models.seal import SealConfig, SealModel
from speechrag.text_encoder import TextEncoder
from speechrag.train.data import Batches, Utterance
from speechrag.train.loop import Arch, TrainConfig, run


def train_config(values: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(values, SealConfig)


def build(config: SealConfig, text: TextEncoder) -> SealModel:
    return SealModel(config, text)


@torch.no_grad()
def validate(model: SealModel, batches: Batches, val: list[Utterance],
             device: torch.device) -> dict:
    model.eval()
    speech, queries = [], []
    for i in range(0, len(val), batches.batch_size):
        b = {k: v.to(device) for k, v in batches.collate(val[i:i + batches.batch_size]).items()}
        speech.append(model(b["states"], b["state_mask"])["speech_emb"])
        queries.append(model.project(model._text_sentence(b["query_ids"], b["query_lengths"])))
    s, q = torch.cat(speech), torch.cat(queries)
    t = model.encode_text([u.text for u in val])
    gold = torch.arange(len(val), device=device)
    model.train()
    return {"val_r1": float((torch.argmax(q @ s.T, 1) == gold).float().mean()),
            "val_align_r1": float((torch.argmax(t @ s.T, 1) == gold).float().mean()),
            "val_n": len(val)}


SEAL = Arch("seal", SealConfig, build, validate, __doc__)


def main(argv: list[str] | None = None) -> Path:
    """Train (or resume) SEAL and return the path of the shippable ``model.pt``."""
    return run(SEAL, argv)
