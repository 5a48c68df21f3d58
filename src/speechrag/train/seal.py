"""Train SEAL: ``speechrag train --arch seal --corpus DIR [--config FILE] [--out DIR]``.

Stage 1 aligns the speech adaptor with the frozen text encoder's states of each
utterance's own transcript (the alignment loss: cosine or Wasserstein, one layer
or several); stage 2 fine-tunes for retrieval, InfoNCE from the passage's questions
(both kinds) to its speech in the shared space, multi-tasked with the alignment
loss. A corpus with spoken queries adds them: aligned with their own words, and in
stage 2 paired with their passage's text (spoken query -> text document).
Validation on held-out train passages: query -> utterance R@1, transcript ->
utterance R@1, spoken query -> passage text R@1. The loop, checkpoints and curves
are the shared training app's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechrag.models.seal import SealConfig, SealModel
from speechrag.models.text_encoder import TextEncoder
from speechrag.train.data import Batches, Utterance, to_device
from speechrag.train.loop import Arch, run


def build(config: SealConfig, text: TextEncoder) -> SealModel:
    return SealModel(config, text)


@torch.no_grad()
def _speech(model: SealModel, batches: Batches, utts: list[Utterance],
            device: torch.device, paired: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Speech embeddings (N, E) of ``utts`` and, with ``paired``, the projected
    embeddings (N, E) of their paired texts."""
    speech, texts = [], []
    for i in range(0, len(utts), batches.batch_size):
        b = to_device(batches.collate(utts[i:i + batches.batch_size]), device)
        speech.append(model(b["states"], b["state_mask"])["speech_emb"])
        if paired:
            texts.append(model.project(model.text_sentence(b["query_ids"],
                                                            b["query_lengths"])))
    return torch.cat(speech), torch.cat(texts) if paired else None


@torch.no_grad()
def validate(model: SealModel, batches: Batches, val: list[Utterance],
             device: torch.device) -> dict:
    """On held-out train passages: written question -> passage speech R@1, transcript
    -> passage speech R@1, and (with spoken queries) spoken query -> passage text R@1
    among the held-out passages' texts."""
    model.eval()
    passages = [u for u in val if u.kind == "passage"]
    s, q = _speech(model, batches, passages, device)
    t = model.encode_text([u.text for u in passages])
    gold = torch.arange(len(passages), device=device)
    row = {"val_r1": float((torch.argmax(q @ s.T, 1) == gold).float().mean()),
           "val_align_r1": float((torch.argmax(t @ s.T, 1) == gold).float().mean()),
           "val_n": len(passages)}
    spoken = [u for u in val if u.kind == "query"]
    if spoken:
        speech, _ = _speech(model, batches, spoken, device, paired=False)
        where = {u.passage_id: i for i, u in enumerate(passages)}
        truth = torch.tensor([where[u.passage_id] for u in spoken], device=device)
        hit = torch.argmax(speech @ t.T, 1) == truth
        row |= {"val_spoken_r1": float(hit.float().mean()), "val_spoken_n": len(spoken)}
    model.train()
    return row


SEAL = Arch("seal", SealConfig, build, validate, __doc__)


def main(argv: list[str] | None = None) -> Path:
    """Train (or resume) SEAL and return the path of the shippable ``model.pt``."""
    return run(SEAL, argv)
