"""The ASR cascade: ASR transcribes the speech, the text encoder embeds the transcript.
The baseline every end-to-end model is measured against.

Two ways to get each window's transcript (``CascadeConfig.asr_pass``):

- ``"file"`` (the ``cascade`` preset), what a practitioner builds: each recording is
  transcribed once, with word times, and each window gets the words whose middle falls
  inside it (:func:`words_in`), so overlapping windows cost nothing extra;
- ``"window"``: each window is transcribed on its own (with a 20 s hop, every second of
  audio twice), as the project's first cascade did.

ASR models: faster-whisper (Whisper, CTranslate2 int8) or Moonshine tiny (ONNX Runtime,
English; :class:`MoonshineTranscriber`), the fastest offline ASR that ships with weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np

from speechrag.assets import resolve
from speechrag.models.text_encoder import TextEncoder
from speechrag.retrievers.specs import CascadeConfig
from speechrag.segment import Segment

__all__ = ["CascadeConfig", "CascadeRetriever", "MoonshineTranscriber", "Transcriber",
           "transcriber", "words_in"]

Word = tuple[float, float, str]  # (start_s, end_s, word) in the recording




CHUNK_SAMPLES = 30 * 16000  # Whisper hears 30 s at a time
MIN_CHUNK_SAMPLES = 1600  # a tail under 0.1 s holds no word; Whisper would only hallucinate


def words_in(words: list[Word], start_s: float, end_s: float) -> str:
    """The words (sorted by start) whose middle lies in [start_s, end_s), joined."""
    return " ".join(w for a, b, w in words if start_s <= (a + b) / 2 < end_s).strip()


SEED = 0  # CTranslate2's sampling seed, set before every transcription


def _seed() -> None:
    import ctranslate2  # comes with faster-whisper

    ctranslate2.set_random_seed(SEED)


class Transcriber:
    """faster-whisper on CPU over in-memory 16 kHz samples.

    Greedy decoding falls back to sampling at rising temperatures where a stretch decodes
    badly (faster-whisper's default, which keeps Whisper out of repetition loops). That
    sampling made transcripts differ from run to run (one WikiSpoken episode gave a
    different transcript in each of 5 runs), so CTranslate2's random seed is reset before
    every call: the same audio gives the same index, whatever the process or thread count
    (Ray workers included).
    """

    def __init__(self, config: CascadeConfig) -> None:
        path = resolve(config.whisper)
        if os.path.isdir(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        self.config = config
        threads = config.cpu_threads or os.cpu_count() or 1
        self.model = WhisperModel(path, device="cpu", compute_type=config.compute_type,
                                  cpu_threads=threads)

    def transcribe_many(self, batch: list[np.ndarray]) -> list[str]:
        """Transcripts of several segments, each (n,) float32 at 16 kHz.

        With ``batch_size > 1`` the segments are laid end to end and cut into <= 30 s
        clips at segment boundaries, and faster-whisper's batched pipeline decodes
        ``batch_size`` clips at a time; each piece's text goes back to its segment.
        Faster (1.3x on 2 cores) but less accurate: a clip is decoded in one pass with no
        re-seeking (WER 0.199 vs 0.120 sequential on WikiSpoken episodes), so it is opt-in.
        """
        if self.config.batch_size <= 1:
            return [self.transcribe(s) for s in batch]
        from faster_whisper import BatchedInferencePipeline

        clips: list[dict[str, float]] = []
        owners: list[int] = []
        offset = 0
        for i, s in enumerate(batch):
            for a in range(0, len(s), CHUNK_SAMPLES):
                b = min(a + CHUNK_SAMPLES, len(s))
                if b - a >= MIN_CHUNK_SAMPLES:
                    clips.append({"start": (offset + a) / 16000, "end": (offset + b) / 16000})
                    owners.append(i)
            offset += len(s)
        texts: list[list[str]] = [[] for _ in batch]
        if not clips:
            return ["" for _ in batch]
        pipeline = BatchedInferencePipeline(self.model)
        _seed()
        pieces, _ = pipeline.transcribe(
            np.concatenate(batch), language=self._language(), beam_size=self.config.beam_size,
            clip_timestamps=clips, batch_size=self.config.batch_size, without_timestamps=False,
        )
        starts = np.array([c["start"] for c in clips])
        for piece in pieces:  # a piece starts at its clip's offset (no timestamps asked)
            clip = int(np.searchsorted(starts, piece.start + 1e-3, side="right")) - 1
            texts[owners[max(clip, 0)]].append(piece.text.strip())
        return [" ".join(t).strip() for t in texts]

    def _language(self) -> str | None:
        return self.config.language if self.model.model.is_multilingual else None

    def transcribe(self, samples: np.ndarray) -> str:
        """samples: (n,) float32 at 16 kHz -> transcript (may be empty for silence)."""
        if len(samples) == 0:
            return ""
        _seed()
        pieces, _ = self.model.transcribe(
            samples, language=self._language(), beam_size=self.config.beam_size,
            # Timestamp mode: Whisper re-seeks from its last timestamp, so speech after a
            # pause is not skipped. Measured on WikiSpoken episodes (whisper-base, greedy):
            # WER 0.120 with timestamps vs 0.430 without, and no slower.
            condition_on_previous_text=False, without_timestamps=False, vad_filter=False,
        )
        return " ".join(p.text.strip() for p in pieces).strip()

    def transcribe_words(self, samples: np.ndarray,
                         on_progress: Callable[[float], None] | None = None) -> list[Word]:
        """A whole recording (n,) float32 at 16 kHz -> its words with times, in one pass
        (Whisper's own 30 s seeking, word times from its cross-attention alignment).
        ``on_progress(seconds_done)`` as Whisper moves through the audio."""
        if len(samples) < MIN_CHUNK_SAMPLES:
            return []
        _seed()
        pieces, _ = self.model.transcribe(
            samples, language=self._language(), beam_size=self.config.beam_size,
            condition_on_previous_text=False, without_timestamps=False, vad_filter=False,
            word_timestamps=True)
        words: list[Word] = []
        for piece in pieces:
            words += [(w.start, w.end, w.word.strip()) for w in piece.words or []
                      if w.word.strip()]
            if on_progress:
                on_progress(piece.end)
        return words


class MoonshineTranscriber:
    """Moonshine tiny through its own runtime (moonshine-voice 0.1.0). It cuts the audio
    into lines at pauses and gives each line a start and a duration, not word times, so
    a line's words are spread evenly over its span."""

    def __init__(self, config: CascadeConfig) -> None:
        from moonshine_voice import ModelArch
        from moonshine_voice.transcriber import Transcriber as Moonshine

        self.config = config
        self.model = Moonshine(resolve(config.whisper), ModelArch.TINY)

    def _lines(self, samples: np.ndarray) -> list:
        if len(samples) < MIN_CHUNK_SAMPLES:
            return []
        return self.model.transcribe_without_streaming(samples.tolist(), 16000).lines

    def transcribe(self, samples: np.ndarray) -> str:
        """samples: (n,) float32 at 16 kHz -> transcript."""
        return " ".join(line.text.strip() for line in self._lines(samples)).strip()

    def transcribe_many(self, batch: list[np.ndarray]) -> list[str]:
        return [self.transcribe(s) for s in batch]

    def transcribe_words(self, samples: np.ndarray,
                         on_progress: Callable[[float], None] | None = None) -> list[Word]:
        """A whole recording -> its words, each line's spread evenly over the line."""
        words: list[Word] = []
        for line in self._lines(samples):
            tokens = line.text.split()
            step = line.duration / max(len(tokens), 1)
            words += [(line.start_time + i * step, line.start_time + (i + 1) * step, t)
                      for i, t in enumerate(tokens)]
        if on_progress:
            on_progress(len(samples) / 16000)
        return words


def transcriber(config: CascadeConfig) -> Transcriber | MoonshineTranscriber:
    """The ASR the config names."""
    if config.whisper.startswith("moonshine"):
        return MoonshineTranscriber(config)
    return Transcriber(config)


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
    def asr(self) -> Transcriber | MoonshineTranscriber:
        """The ASR, loaded on first use: searching with text queries never needs it."""
        if self._asr is None:
            self._asr = transcriber(self.config)
        return self._asr

    @property
    def whole_recordings(self) -> bool:
        """True: the index hands this retriever a recording's windows together
        (:meth:`encode_recording`), so it transcribes the recording once."""
        return self.config.asr_pass == "file"

    def encode_segments(self, segments: list[Segment]) -> tuple[np.ndarray, list[str | None]]:
        """segments -> embeddings (N, dim) unit norm, transcripts (N,)."""
        texts = self.asr.transcribe_many([s.samples for s in segments])
        return self.text.encode(texts), list(texts)

    def encode_recording(self, windows: Iterable[Segment],
                         on_progress: Callable[[float], None] | None = None
                         ) -> tuple[list[Segment], np.ndarray, list[str | None]]:
        """The windows of one recording, in order and overlapping or touching (fixed
        windows) -> (the windows, their embeddings (N, dim), their transcripts): the
        recording is put back together from them (each sample once), transcribed once
        with word times, and each window gets the words whose middle is inside it.
        Holds the recording in memory (230 MB an hour)."""
        kept: list[Segment] = []
        parts: list[np.ndarray] = []
        covered = 0  # samples of the recording put back so far
        for seg in windows:
            start = round(seg.start_s * 16000)
            if start > covered:  # a gap (not made by fixed windows): silence keeps times
                parts.append(np.zeros(start - covered, dtype=np.float32))
                covered = start
            if start + len(seg.samples) > covered:
                parts.append(seg.samples[covered - start:])
                covered = start + len(seg.samples)
            kept.append(Segment(seg.source, seg.start_s, seg.end_s, np.zeros(0, np.float32)))
        if not kept:
            return [], np.zeros((0, self.dim), np.float32), []
        words = self.asr.transcribe_words(np.concatenate(parts), on_progress)
        texts: list[str | None] = [words_in(words, w.start_s, w.end_s) for w in kept]
        return kept, self.text.encode([t or "" for t in texts]), texts

    @property
    def encoding(self) -> dict[str, float]:
        """Nothing outside the config shapes the vectors (the ASR reads whole segments)."""
        return {}

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """queries -> (N, dim) unit norm."""
        return self.text.encode(texts)

    def encode_query_audio(self, samples: list[np.ndarray]
                           ) -> tuple[np.ndarray, list[str | None]]:
        """spoken queries -> (N, dim) unit norm, and Whisper's transcript of each."""
        heard: list[str | None] = [self.asr.transcribe(s) for s in samples]
        return self.text.encode([h or "" for h in heard]), heard
