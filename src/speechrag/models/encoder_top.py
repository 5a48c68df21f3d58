"""The top blocks of the Whisper encoder as a trained part of CLSR or SEAL (issue 3's
"optionally unfreeze the top encoder layers").

With ``encoder_layers = k`` in a model config, the frozen encoder runs only its first
``n_layer - k`` blocks (:class:`~speechrag.speech_states.SpeechStates` with
``trained_top=k``; training caches those states on disk under their own policy name),
and the model runs the last ``k`` blocks and the final LayerNorm itself, starting from
Whisper's own weights. So at step 0 the model sees exactly the states of the frozen
encoder, and a run may start (``--init``) from a checkpoint trained on them.

The frozen part runs on 20 s pieces (each stretch of audio once, as always); the
trained blocks attend over the whole segment, so they can also carry context across
piece edges. Their cost is paid per window, not per piece: with the default 40 s
windows and 20 s hop every second goes through them twice.

Shapes: B clips, S encoder states (50 per second), D encoder width.
"""

from __future__ import annotations

import torch
from torch import nn

from speechrag.models.whisper_encoder import WhisperEncoder


class EncoderTop(nn.Module):
    """The last ``k`` blocks and the final LayerNorm of a Whisper encoder, trainable."""

    def __init__(self, whisper: str, k: int) -> None:
        super().__init__()
        encoder = WhisperEncoder.load(whisper)
        n = encoder.config.n_layer
        if not 0 < k <= n:
            raise ValueError(f"encoder_layers={k}: {whisper} has {n} blocks; train 1 to {n}")
        self.blocks = nn.ModuleList(encoder.blocks[n - k:])
        self.ln_post = encoder.ln_post
        # at search time, the dtype the frozen encoder runs in (bf16 where native: the
        # retriever sets it); training always runs in fp32
        self.inference_dtype: torch.dtype | None = None

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """states (B, S, D) after block n_layer - k, mask (B, S) True on real states ->
        (B, S, D) final encoder states (zero on padding)."""
        dtype = None if self.training else self.inference_dtype
        with torch.autocast(states.device.type, dtype=dtype or torch.bfloat16,
                            enabled=dtype is not None):
            x = states
            for block in self.blocks:
                x = block(x, ~mask)
            x = self.ln_post(x).float()
        return x * mask[..., None].to(x.dtype)
