"""benchmarks/gpu/whisper_parts.py: Whisper's model.bin cut into parts that fit a GPU call
and joined again there must give Whisper's own tensors back, bit for bit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from speechrag.assets import resolve
from speechrag.models.ct2 import read_ct2
from speechrag.research.whisper_decoder import read_whisper_decoder, transformer_decoder_state

SCRIPT = Path(__file__).parents[1] / "benchmarks/gpu/whisper_parts.py"
spec = importlib.util.spec_from_file_location("whisper_parts", SCRIPT)
parts = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parts)


def test_parts_merge_back_into_whisper(tmp_path: Path) -> None:
    src = Path(resolve("whisper-tiny.en"))
    n_enc = parts.cut(src, tmp_path / "model", lambda n: n.startswith("encoder/"))
    n_dec = parts.cut(src, tmp_path / "dec", parts.decoder_part(2))
    whole = read_ct2(src / "model.bin")
    dec = read_ct2(tmp_path / "dec/model.bin")
    assert not any(k.startswith(("decoder/embeddings", "decoder/projection",
                                 "decoder/layer_2/", "decoder/layer_3/")) for k in dec)
    assert "decoder/layer_1/ffn/linear_0/weight" in dec and "decoder/num_heads" in dec
    assert (tmp_path / "dec/config.json").read_text() == (src / "config.json").read_text()

    assert parts.merge(tmp_path / "model", tmp_path / "dec") == n_dec
    assert parts.merge(tmp_path / "model", tmp_path / "dec") == 0  # twice: nothing new
    merged = read_ct2(tmp_path / "model/model.bin")
    assert len(merged) >= n_enc + n_dec
    assert set(merged) == {k for k in whole if k.startswith("encoder/")} | set(dec)
    assert all(torch.equal(merged[k], whole[k]) for k in merged)
    mine = transformer_decoder_state(read_whisper_decoder(str(tmp_path / "model")), 2)
    theirs = transformer_decoder_state(read_whisper_decoder("whisper-tiny.en"), 2)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert not list((tmp_path / "model").glob("*.tmp"))
