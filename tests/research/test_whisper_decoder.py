"""Whisper's decoder blocks loaded into torch's TransformerDecoder: run causally with
Whisper's own token embeddings on real speech, they pick the tokens faster-whisper picks,
so every tensor is where it belongs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from torch import nn

from speechrag import audio
from speechrag.assets import resolve
from speechrag.models.whisper_encoder import MAX_FRAMES, LogMel, WhisperEncoder
from speechrag.research.whisper_decoder import (
    decoder_dims,
    read_whisper_decoder,
    transformer_decoder_state,
)

from ..conftest import TOPICS

NAME = "whisper-tiny.en"


def whisper_decoder(w: dict[str, torch.Tensor], n_layer: int) -> nn.TransformerDecoder:
    d, heads, _ = decoder_dims(w)
    layer = nn.TransformerDecoderLayer(d, heads, 4 * d, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    dec = nn.TransformerDecoder(layer, n_layer, norm=nn.LayerNorm(d))
    dec.load_state_dict(transformer_decoder_state(w, n_layer), strict=True)
    return dec.eval()


@torch.no_grad()
def next_token_argmax(dec: nn.TransformerDecoder, w: dict[str, torch.Tensor],
                      states: torch.Tensor, ids: list[int]) -> list[int]:
    """Teacher forcing: the decoder's argmax after each prefix of ``ids`` (tied output
    layer, Whisper's token and position embeddings, causal mask)."""
    emb, pos = w["embeddings/weight"], w["position_encodings/encodings"]
    t = torch.tensor(ids)[None]
    causal = nn.Transformer.generate_square_subsequent_mask(len(ids))
    h = dec(emb[t] + pos[: len(ids)][None], states, tgt_mask=causal, tgt_is_causal=True)
    return (h[0] @ emb.T).argmax(-1).tolist()


def test_decoder_blocks_predict_what_faster_whisper_decodes(speech_dir: Path) -> None:
    from faster_whisper import WhisperModel

    w = read_whisper_decoder(NAME)
    d, heads, n_layer = decoder_dims(w)
    assert (d, heads, n_layer) == (384, 6, 4)
    dec = whisper_decoder(w, n_layer)
    enc = WhisperEncoder.load(NAME)
    tok = Tokenizer.from_file(str(Path(resolve(NAME)) / "tokenizer.json"))
    prompt = [tok.token_to_id("<|startoftranscript|>"), tok.token_to_id("<|notimestamps|>")]
    reference = WhisperModel(resolve(NAME), device="cpu", compute_type="float32")
    agree, total = 0, 0
    for name in TOPICS:
        samples = audio.load(speech_dir / f"{name}.wav")
        segments, _ = reference.transcribe(samples, beam_size=1, without_timestamps=True)
        theirs = [t for s in segments for t in s.tokens] + [tok.token_to_id("<|endoftext|>")]
        assert len(theirs) > 5
        # Whisper's decoder was trained on 30 s windows: pad as faster-whisper does
        padded = np.pad(samples, (0, MAX_FRAMES * 160 - len(samples)))
        with torch.no_grad():
            states = enc(LogMel()(padded)[None])
        ours = next_token_argmax(dec, w, states, prompt + theirs[:-1])[len(prompt) - 1:]
        agree += sum(a == b for a, b in zip(ours, theirs, strict=True))
        total += len(theirs)
    # 84 of 89 here: faster-whisper suppresses some tokens and its CTranslate2 encoder
    # differs slightly from ours; one misplaced LayerNorm already drops this to 33 of 89
    assert agree / total >= 0.9, (agree, total)


def test_fewer_blocks_and_bad_requests() -> None:
    w = read_whisper_decoder(NAME)
    assert set(transformer_decoder_state(w, 2)) == set(whisper_decoder(w, 2).state_dict())
    with pytest.raises(ValueError, match="5 decoder blocks asked; this Whisper has 4"):
        transformer_decoder_state(w, 5)
