"""SEAL behind the one retriever interface: speech and text land in one space.

Segments and spoken queries go through Whisper's encoder (actual length), the
trained adaptor, mean pooling and the shared projection; text queries and text
documents go through the frozen text encoder and the same projection. There is no
transcript (SEAL never decodes words), so hits show none.
"""

from __future__ import annotations

import numpy as np
import torch

from speechrag.audio import SAMPLE_RATE
from speechrag.checkpoints import CheckpointSpec, length_batches, verified, whisper_states
from speechrag.models.seal import SealModel
from speechrag.models.whisper_encoder import LogMel, WhisperEncoder
from speechrag.segment import Segment


class SealRetriever:
    kind = "seal"

    def __init__(self, spec: CheckpointSpec) -> None:
        self.config = verified(spec)
        self.model = SealModel.load(self.config.checkpoint)
        self.encoder = WhisperEncoder.load(self.model.config.whisper)
        self.mel = LogMel()
        self.dim = self.model.text.dim

    @torch.inference_mode()
    def _encode_speech(self, samples: list[np.ndarray]) -> np.ndarray:
        vecs = np.zeros((len(samples), self.dim), dtype=np.float32)
        for group in length_batches([len(s) / SAMPLE_RATE for s in samples]):
            states, mask = whisper_states(self.encoder, self.mel, [samples[j] for j in group])
            vecs[group] = self.model(states, mask)["speech_emb"].numpy()
        return vecs

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        return self._encode_speech([s.samples for s in segments]), [None] * len(segments)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model.encode_text(texts).numpy().astype(np.float32)

    def encode_query_audio(self, samples: list[np.ndarray]) -> np.ndarray:
        return self._encode_speech(samples)
