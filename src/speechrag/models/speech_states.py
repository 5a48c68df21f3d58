"""Whisper states for the trained retrievers (CLSR, SEAL), with each stretch of audio
encoded once.

Fixed windows overlap: by default a 40 s window starts every 20 s, so encoding each
window on its own sends every second of audio through Whisper twice. Here a segment
is instead cut into *pieces* at absolute multiples of ``piece_s`` seconds of its
recording. Each piece is encoded on its own, and its states are remembered under a
digest of its samples. A segment's states are its pieces' states concatenated, so
the second window that covers a piece reuses it. Under the default windows every
second is encoded once. A piece shorter than ``MIN_PIECE_S`` at a segment's edge is
merged into its neighbour, so VAD segments do not get slivers.

New pieces of similar length share one padded, masked forward pass.

A model that trained Whisper's top blocks runs them itself over each whole segment
(``trained_top``: states stop below them). A model trained with them attending per
piece (``encoder_top_scope = "piece"``, :mod:`speechrag.models.encoder_top`) gives them
to :class:`SpeechStates` as ``top`` instead: they run on each piece right after the
blocks below it and the piece cache holds their output, so each second goes through
them once.

On hardware with native bf16 (a GPU, or a CPU with AVX512-BF16 or AMX), the encoder
runs under bf16 autocast. On the 2-core development machine (AVX512-BF16) this is
2.1x faster, and the states are within 1.4% relative error of fp32 (measured on a
20 s piece of whisper-base). ``SPEECHRAG_ENCODER_DTYPE=float32`` turns it off.

Shapes: B clips, S encoder states (50 per second), D encoder width.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
import torch

from speechrag.audio import SAMPLE_RATE
from speechrag.models.whisper_encoder import FRAMES_PER_STATE, MAX_FRAMES, LogMel, WhisperEncoder
from speechrag.segment import Segment

BATCH_SECONDS = 400.0  # audio per encoder batch: bounds padding waste and memory
PIECE_S = 20.0  # segments are cut at multiples of this many seconds of their recording
STATES_PER_S = 50  # Whisper's encoder states per second of audio
MIN_PIECE_S = 2.0  # an edge piece shorter than this joins its neighbour
CACHE_PIECES = 16  # pieces remembered (~2 MB each for whisper-base): covers one file's overlap
DTYPE_ENV = "SPEECHRAG_ENCODER_DTYPE"


def length_batches(seconds: list[float], limit: float = BATCH_SECONDS) -> list[list[int]]:
    """Indices sorted by duration, cut into consecutive groups of at most ``limit``
    seconds each: clips of similar length share a batch (little padding)."""
    groups: list[list[int]] = []
    total = 0.0
    for i in sorted(range(len(seconds)), key=seconds.__getitem__):
        if groups and total + seconds[i] <= limit:
            groups[-1].append(i)
            total += seconds[i]
        else:
            groups.append([i])
            total = seconds[i]
    return groups


def piece_bounds(start_s: float, end_s: float, piece_s: float = PIECE_S,
                 min_s: float = MIN_PIECE_S) -> list[tuple[float, float]]:
    """[start_s, end_s) cut at the multiples of ``piece_s`` inside it; a first or last
    piece shorter than ``min_s`` is merged into its neighbour.

    >>> piece_bounds(20.0, 60.0)
    [(20.0, 40.0), (40.0, 60.0)]
    >>> piece_bounds(13.0, 41.0)
    [(13.0, 20.0), (20.0, 41.0)]
    """
    first = math.floor(start_s / piece_s) + 1
    cuts = [k * piece_s for k in range(first, math.ceil(end_s / piece_s))]
    if cuts and cuts[0] - start_s < min_s:
        cuts.pop(0)
    if cuts and end_s - cuts[-1] < min_s:
        cuts.pop()
    edges = [start_s, *cuts, end_s]
    return list(zip(edges[:-1], edges[1:], strict=True))


def autocast_dtype(name: str | None = None, device: str = "cpu") -> torch.dtype | None:
    """The dtype the encoder runs in: ``name`` or $SPEECHRAG_ENCODER_DTYPE (``auto``,
    ``float32``, ``bfloat16``); ``auto`` picks bf16 where the hardware has it."""
    name = name or os.environ.get(DTYPE_ENV, "auto")
    if name not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"{DTYPE_ENV}={name!r}: use auto, float32 or bfloat16")
    if name == "float32":
        return None
    if name == "bfloat16":
        return torch.bfloat16
    if device != "cpu":
        return torch.bfloat16
    native = (torch.cpu._is_avx512_bf16_supported()  # private, but the only probe torch has
              or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return torch.bfloat16 if native else None


def states_policy(whisper: str, dtype: str | None = None, piece_s: float = PIECE_S,
                  device: str = "cpu", trained_top: int = 0) -> str:
    """A name for how states are made (model, piece length, dtype, top blocks left to
    the model), e.g. ``whisper-base-piece20s-bf16`` or ``...-bf16-skip-top2``: training
    caches are kept apart by it."""
    name = "bf16" if autocast_dtype(dtype, device) is torch.bfloat16 else "fp32"
    return f"{whisper}-piece{piece_s:g}s-{name}" + (f"-skip-top{trained_top}"
                                                     if trained_top else "")


def pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(S_i, D)] -> zero-padded (B, S_max, D) and mask (B, S_max), True on real states."""
    lengths = torch.tensor([len(x) for x in states])
    padded = torch.nn.utils.rnn.pad_sequence(states, batch_first=True)
    return padded, torch.arange(padded.shape[1])[None] < lengths[:, None]


class SpeechStates:
    """Whisper encoder + log-mel + the piece cache: audio in, states out.

    ``encoded_s`` counts the seconds of audio actually sent through the encoder
    (the benchmark and the tests read it).
    """

    def __init__(self, whisper: str = "whisper-base", dtype: str | None = None,
                 piece_s: float = PIECE_S, cache_pieces: int = CACHE_PIECES,
                 device: str = "cpu", trained_top: int = 0, pool: Executor | None = None,
                 top: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                 ) -> None:
        """device: where the encoder runs ("cpu", "cuda"); log-mel stays on the CPU and
        states come back on the CPU. ``trained_top`` > 0 leaves the encoder's last
        blocks and final LayerNorm to a model that trains them
        (:mod:`speechrag.models.encoder_top`): states are block n_layer - k's output.
        ``pool``, a thread pool, computes the clips' log-mels side by side (numpy's FFT
        and BLAS release the GIL): on a GPU the serial log-mel, not the encoder, bounds
        the throughput. ``top`` (states (B, S, D), mask (B, S) -> (B, S, D)), with
        ``trained_top`` > 0: the model's top blocks, run on each piece here (each piece
        once) instead of on each segment by the model."""
        if top is not None and not trained_top:
            raise ValueError("top blocks given, but trained_top=0 leaves none to them")
        self.top = top
        self.device = torch.device(device)
        self.encoder = WhisperEncoder.load(whisper).to(self.device)
        n = self.encoder.config.n_layer
        if not 0 <= trained_top <= n:
            raise ValueError(f"trained_top={trained_top}: {whisper} has {n} blocks")
        self.n_blocks = n - trained_top
        self.mel = LogMel(self.encoder.config.n_mels)
        self.dtype = autocast_dtype(dtype, self.device.type)
        self.piece_s = piece_s
        self.cache_pieces = cache_pieces
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.encoded_s = 0.0
        self.pool = pool

    @torch.inference_mode()
    def encode(self, clips: list[np.ndarray]) -> list[torch.Tensor]:
        """Clips of at most 30 s, each (n,) float32 at 16 kHz -> states [(S_i, D)] float32,
        S_i = ceil((n // 160) / 2). Similar lengths share a padded forward pass."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(clips)
        all_mels = list((self.pool.map if self.pool else map)(self.mel, clips))
        for group in length_batches([len(c) / SAMPLE_RATE for c in clips]):
            mels = [all_mels[j] for j in group]
            frames = torch.tensor([m.shape[1] for m in mels])
            if int(frames.max()) > MAX_FRAMES:
                raise ValueError(f"clip of {int(frames.max()) / 100:.1f} s > 30 s: cut it first")
            batch = torch.nn.utils.rnn.pad_sequence([m.T for m in mels], batch_first=True)
            with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16,
                                enabled=self.dtype is not None):
                states = self.encoder(batch.transpose(1, 2).to(self.device),
                                      n_frames=frames.to(self.device),
                                      n_blocks=self.n_blocks).float()
            lengths = (frames + FRAMES_PER_STATE - 1) // FRAMES_PER_STATE
            if self.top is not None:
                mask = torch.arange(states.shape[1])[None] < lengths[:, None]
                states = self.top(states, mask.to(states.device))
            states = states.cpu()
            for k, j in enumerate(group):
                out[j] = states[k, : int(lengths[k])]
            self.encoded_s += sum(len(clips[j]) for j in group) / SAMPLE_RATE
        return out

    def clips(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips of any length (queries) -> padded states (B, S, D) and mask (B, S);
        past 30 s a clip is encoded in 30 s chunks, concatenated."""
        chunk = MAX_FRAMES // 100 * SAMPLE_RATE
        pieces = [[c[i:i + chunk] for i in range(0, max(len(c), 1), chunk)] for c in clips]
        flat = self.encode([p for ps in pieces for p in ps])
        states, i = [], 0
        for ps in pieces:
            states.append(torch.cat(flat[i:i + len(ps)]))
            i += len(ps)
        return pad_states(states)

    def segments(self, segments: list[Segment]) -> tuple[torch.Tensor, torch.Tensor]:
        """Segments -> padded states (B, S, D) and mask (B, S); pieces already encoded
        (the overlap with earlier windows) are reused, not encoded again."""
        keys_of: list[list[bytes]] = []
        todo: dict[bytes, np.ndarray] = {}
        for seg in segments:
            keys = []
            for a, b in piece_bounds(seg.start_s, seg.end_s, self.piece_s):
                i, j = (round((t - seg.start_s) * SAMPLE_RATE) for t in (a, b))
                samples = seg.samples[i:j]
                key = hashlib.blake2b(np.ascontiguousarray(samples).tobytes(),
                                      digest_size=16).digest()
                if key not in self._cache:
                    todo[key] = samples
                keys.append(key)
            keys_of.append(keys)
        new = dict(zip(todo, self.encode(list(todo.values())), strict=True))
        states = [torch.cat([new[k] if k in new else self._cache[k] for k in keys])
                  for keys in keys_of]
        for key in (k for keys in keys_of for k in keys):  # most recent last
            self._cache[key] = new.get(key, self._cache.get(key))
            self._cache.move_to_end(key)
        while len(self._cache) > self.cache_pieces:
            self._cache.popitem(last=False)
        return pad_states(states)
