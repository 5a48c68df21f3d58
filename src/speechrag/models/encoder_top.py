"""The top blocks of the Whisper encoder as a trained part of CLSR or SEAL (issue 3's
"optionally unfreeze the top encoder layers").

With ``encoder_layers = k`` in a model config, the frozen encoder runs only its first
``n_layer - k`` blocks (:class:`~speechrag.models.speech_states.SpeechStates` with
``trained_top=k``; training caches those states on disk under their own policy name),
and the model runs the last ``k`` blocks and the final LayerNorm itself, starting from
Whisper's own weights. So at step 0 the model sees exactly the states of the frozen
encoder, and a run may start (``--init``) from a checkpoint trained on them.

The frozen part runs on 20 s pieces (each stretch of audio once, as always). The
trained blocks attend, by the model's ``encoder_top_scope``:

- ``"segment"``: over the whole segment, so they carry context across piece edges; their
  cost is paid per window, not per piece: with the default 40 s windows and 20 s hop
  every second goes through them twice, over 2,000 states.
- ``"piece"``: within each 20 s piece, like the frozen blocks below them. Training splits
  each utterance at the same edges as :func:`~speechrag.models.speech_states.piece_bounds`;
  at search time the retriever runs them inside the piece encoder, so each piece goes
  through them once and overlapping windows reuse it. Running a model trained on whole
  segments per piece instead costs retrieval (the shipped top-2 CLSR on the long-form
  validation episodes: R@1 83.5 -> 78.7), so the scope is part of the model.

Shapes: B clips, S encoder states (50 per second), D encoder width.
"""

from __future__ import annotations

import torch
from torch import nn

from speechrag.models.speech_states import STATES_PER_S, pad_states, piece_bounds
from speechrag.models.whisper_encoder import WhisperEncoder

SCOPES = ("segment", "piece")


class EncoderTop(nn.Module):
    """The last ``k`` blocks and the final LayerNorm of a Whisper encoder, trainable."""

    def __init__(self, whisper: str, k: int, scope: str = "segment") -> None:
        super().__init__()
        if scope not in SCOPES:
            raise ValueError(f"encoder_top_scope must be one of {SCOPES}, not {scope!r}")
        self.scope = scope
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
        """states (B, S, D) after block n_layer - k, mask (B, S) True on real states, each
        row starting at a piece edge (a segment or an utterance) -> (B, S, D) final
        encoder states (zero on padding), attending over the model's scope."""
        if self.scope == "segment":
            return self.run(states, mask)
        rows, spans = [], []
        for b, n in enumerate(mask.sum(1).tolist()):
            if not n:
                continue
            for start, end in piece_bounds(0.0, n / STATES_PER_S):
                i, j = round(start * STATES_PER_S), round(end * STATES_PER_S)
                rows.append(states[b, i:j])
                spans.append((b, i, j))
        out = torch.zeros_like(states)
        pieces = self.run(*pad_states(rows))
        for (b, i, j), piece in zip(spans, pieces, strict=True):
            out[b, i:j] = piece[:j - i]
        return out

    def run(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The blocks over each row as it is: states (B, S, D), mask (B, S) -> (B, S, D)
        (zero on padding)."""
        dtype = None if self.training else self.inference_dtype
        with torch.autocast(states.device.type, dtype=dtype or torch.bfloat16,
                            enabled=dtype is not None):
            x = states
            for block in self.blocks:
                x = block(x, ~mask)
            x = self.ln_post(x).float()
        return x * mask[..., None].to(x.dtype)


def grow_top_state(state: dict[str, torch.Tensor], old_k: int, new_k: int,
                   prefix: str = "encoder_top.") -> dict[str, torch.Tensor]:
    """A checkpoint's weights, trained with Whisper's top ``old_k`` blocks, renumbered for
    a model that trains the top ``new_k`` (an ``--init`` run that unfreezes more of
    Whisper). ``blocks.i`` counts from the lowest trained block, so Whisper's last block
    is ``blocks.{old_k - 1}`` in the checkpoint and ``blocks.{new_k - 1}`` in the new
    model: each trained block moves up by ``new_k - old_k``, and the blocks below them,
    absent from the checkpoint, keep Whisper's weights, as the checkpoint's frozen encoder
    had them. On audio within one 20 s piece step 0 then computes what the checkpoint did;
    across piece edges the newly trained blocks attend over the whole segment, where the
    frozen ones saw one piece at a time, so the head starts a little off (the shipped CLSR
    from top 2 to top 4, 30 passages of training voices: WER 24.2% -> 31.1% at step 0).
    Loading by name instead puts the trained last blocks in the wrong places, silently
    (every block has the same shapes): WER 100% at step 0 there. Training fewer blocks
    than the checkpoint did would drop trained weights: ValueError."""
    if new_k == old_k or old_k == 0:
        return state
    if new_k < old_k:
        raise ValueError(f"the checkpoint trained Whisper's top {old_k} blocks; a run "
                         f"from it may train more of them, not {new_k}")
    blocks, shift = prefix + "blocks.", new_k - old_k
    out = {}
    for key, value in state.items():
        if key.startswith(blocks):
            index, rest = key[len(blocks):].split(".", 1)
            key = f"{blocks}{int(index) + shift}.{rest}"
        out[key] = value
    return out
