"""CLSR behind the one retriever interface: a trained checkpoint indexes and searches.

Segments go through Whisper's encoder on their actual length (30 s chunks past 30 s),
then the checkpoint's CIF, decoder, VQ adaptor and the frozen text encoder; the
decoded tokens are kept as a rough transcript at no extra cost.
"""

from __future__ import annotations

import numpy as np
import torch

from speechrag.audio import SAMPLE_RATE
from speechrag.checkpoints import CheckpointSpec, length_batches, verified, whisper_states
from speechrag.models.clsr import ClsrModel
from speechrag.models.whisper_encoder import LogMel, WhisperEncoder
from speechrag.segment import Segment


class ClsrRetriever:
    kind = "clsr"

    def __init__(self, spec: CheckpointSpec) -> None:
        self.config = verified(spec)
        self.model = ClsrModel.load(self.config.checkpoint)
        self.encoder = WhisperEncoder.load(self.model.config.whisper)
        self.mel = LogMel()
        self.dim = self.model.text.dim

    @torch.inference_mode()
    def _encode_audio(self, samples: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        out = self.model(*whisper_states(self.encoder, self.mel, samples))
        tok = self.model.text.model.tokenizer
        texts = [tok.decode(ids[:n].tolist(), skip_special_tokens=True)
                 for ids, n in zip(out["token_ids"], out["n_tokens"], strict=True)]
        return out["speech_emb"].numpy().astype(np.float32), texts

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        """Segments of similar length are batched together (less padding)."""
        vecs = np.zeros((len(segments), self.dim), dtype=np.float32)
        texts: list[str | None] = [None] * len(segments)
        for group in length_batches([s.duration_s for s in segments]):
            v, t = self._encode_audio([segments[j].samples for j in group])
            vecs[group] = v
            for k, j in enumerate(group):
                texts[j] = t[k]
        return vecs, texts

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.model.text.encode(texts)

    def encode_query_audio(self, samples: list[np.ndarray]) -> np.ndarray:
        vecs = np.zeros((len(samples), self.dim), dtype=np.float32)
        for group in length_batches([len(s) / SAMPLE_RATE for s in samples]):
            vecs[group] = self._encode_audio([samples[j] for j in group])[0]
        return vecs
