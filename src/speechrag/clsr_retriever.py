"""CLSR behind the one retriever interface: a trained checkpoint indexes and searches.

Segments go through Whisper's encoder on their actual length (30 s chunks past 30 s),
then the checkpoint's CIF, decoder, VQ adaptor and the frozen text encoder; the
decoded tokens are kept as a rough transcript at no extra cost.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from speechrag.models.clsr import ClsrModel
from speechrag.models.whisper_encoder import LogMel, WhisperEncoder
from speechrag.segment import Segment

BATCH_SECONDS = 400.0  # audio per encoder batch: bounds padding waste and memory


@dataclass(frozen=True)
class ClsrSpec:
    """How an index names a CLSR model: the checkpoint file and its checksum."""

    checkpoint: str
    sha256: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


class ClsrRetriever:
    kind = "clsr"

    def __init__(self, spec: ClsrSpec) -> None:
        path = Path(spec.checkpoint)
        if not path.is_file():
            raise ValueError(f"{path}: CLSR checkpoint not found")
        actual = file_sha256(path)
        if spec.sha256 and spec.sha256 != actual:
            raise ValueError(f"{path}: checkpoint changed since the index was built "
                             f"(sha256 {actual[:12]}..., index says {spec.sha256[:12]}...)")
        self.config = ClsrSpec(str(path.resolve()), actual)
        self.model = ClsrModel.load(path)
        self.encoder = WhisperEncoder.load(self.model.config.whisper)
        self.mel = LogMel()
        self.dim = self.model.text.dim

    @torch.inference_mode()
    def _encode_audio(self, samples: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        states = [self.encoder.encode_long(self.mel(s)) for s in samples]  # each (S_i, D_enc)
        s_max = max(len(x) for x in states)
        padded = torch.stack([torch.nn.functional.pad(x, (0, 0, 0, s_max - len(x)))
                              for x in states])
        mask = torch.arange(s_max)[None] < torch.tensor([len(x) for x in states])[:, None]
        out = self.model(padded, mask)
        tok = self.model.text.model.tokenizer
        texts = [tok.decode(ids[:n].tolist(), skip_special_tokens=True)
                 for ids, n in zip(out["token_ids"], out["n_tokens"], strict=True)]
        return out["speech_emb"].numpy().astype(np.float32), texts

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        """Segments of similar length are batched together (less padding)."""
        vecs = np.zeros((len(segments), self.dim), dtype=np.float32)
        texts: list[str | None] = [None] * len(segments)
        order = sorted(range(len(segments)), key=lambda i: segments[i].duration_s)
        for group in _batches(order, [s.duration_s for s in segments]):
            v, t = self._encode_audio([segments[j].samples for j in group])
            vecs[group] = v
            for k, j in enumerate(group):
                texts[j] = t[k]
        return vecs, texts

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.model.text.encode(texts)

    def encode_query_audio(self, samples: list[np.ndarray]) -> np.ndarray:
        return self._encode_audio(samples)[0]


def _batches(order: list[int], seconds: list[float]) -> list[list[int]]:
    """Consecutive groups of ``order`` holding at most BATCH_SECONDS of audio each."""
    groups: list[list[int]] = []
    total = 0.0
    for i in order:
        if groups and groups[-1] and total + seconds[i] <= BATCH_SECONDS:
            groups[-1].append(i)
            total += seconds[i]
        else:
            groups.append([i])
            total = seconds[i]
    return groups
