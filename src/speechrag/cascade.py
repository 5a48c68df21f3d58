"""The ASR cascade: faster-whisper transcribes each segment, the text encoder
embeds the transcript. The baseline every end-to-end model is measured against.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from speechrag.assets import resolve
from speechrag.segment import Segment
from speechrag.text_encoder import TextEncoder


@dataclass(frozen=True)
class CascadeConfig:
    """Whisper ASR settings plus the text encoder. Saved in every index it builds."""

    whisper: str = "whisper-base"
    beam_size: int = 1  # 1 = greedy
    compute_type: str = "int8"
    language: str | None = "en"
    text_encoder: str = "all-MiniLM-L6-v2"
    cpu_threads: int = 0  # 0 = all cores

    def to_dict(self) -> dict:
        return asdict(self)


class Transcriber:
    """faster-whisper on CPU over in-memory 16 kHz samples."""

    def __init__(self, config: CascadeConfig) -> None:
        path = resolve(config.whisper)
        if os.path.isdir(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        self.config = config
        threads = config.cpu_threads or os.cpu_count() or 1
        self.model = WhisperModel(path, device="cpu", compute_type=config.compute_type,
                                  cpu_threads=threads)

    def transcribe(self, samples: np.ndarray) -> str:
        """samples: (n,) float32 at 16 kHz -> transcript (may be empty for silence)."""
        if len(samples) == 0:
            return ""
        language = self.config.language if self.model.model.is_multilingual else None
        pieces, _ = self.model.transcribe(
            samples, language=language, beam_size=self.config.beam_size,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
        )
        return " ".join(p.text.strip() for p in pieces).strip()


class CascadeRetriever:
    """Whisper ASR -> transcript -> TextEncoder. Queries (text) go straight to the encoder;
    spoken queries are transcribed first."""

    kind = "cascade"

    def __init__(self, config: CascadeConfig | None = None) -> None:
        self.config = config or CascadeConfig()
        self._asr: Transcriber | None = None
        self.text = TextEncoder(self.config.text_encoder)
        self.dim = self.text.dim

    @property
    def asr(self) -> Transcriber:
        """Whisper, loaded on first use: searching with text queries never needs it."""
        if self._asr is None:
            self._asr = Transcriber(self.config)
        return self._asr

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        """segments -> embeddings (N, dim) unit norm, transcripts (N,)."""
        texts = [self.asr.transcribe(s.samples) for s in segments]
        return self.text.encode(texts), list(texts)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """queries -> (N, dim) unit norm."""
        return self.text.encode(texts)

    def encode_query_audio(self, samples: list[np.ndarray]) -> np.ndarray:
        """spoken queries, each (n,) float32 16 kHz -> (N, dim) unit norm."""
        return self.text.encode([self.asr.transcribe(s) for s in samples])
