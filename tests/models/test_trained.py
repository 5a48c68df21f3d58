"""The one checkpoint contract (models/trained.py) and the converter of format-1 files
(train/upgrade.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.models.seal import SealModel
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.trained import CHECKPOINT_FORMAT, read_checkpoint
from speechrag.retrievers import TRAINED_DIR

SHIPPED = ("clsr", "seal")


@pytest.mark.parametrize("arch", SHIPPED)
def test_every_checkpoint_carries_the_same_keys(arch: str) -> None:
    payload = read_checkpoint(TRAINED_DIR / f"{arch}.pt", arch)
    assert payload["arch"] == arch and payload["format"] == CHECKPOINT_FORMAT
    assert set(payload["pretrained"]) == {"text_encoder", "whisper"}
    assert all(len(v) == 64 for v in payload["pretrained"].values())


def test_a_file_without_arch_is_refused_with_the_way_to_convert_it(tmp_path: Path,
                                                                   text: TextEncoder) -> None:
    """A format-1 CLSR file (no arch, the CIF settings at the top of its config, a digest
    named by model) is refused by name; the converter makes it load as the same model."""
    model = ClsrModel(ClsrConfig(whisper="whisper-tiny.en", d_encoder=384, encoder_layers=0),
                      text).eval()
    old = {"format": 1, "config": {
        "whisper": "whisper-tiny.en", "d_encoder": 384, "aligner": "ctc", "state_stride": 6,
        "state_pooling": "stack", "time_encoding": False, "ctc_blocks": 1,
        "ctc_conv_blocks": 2, "vocab_min_count": 10, "rare_tokens": "spell",
        "decoder": {"d_model": 256}},
        "state": model.trained_state_dict(),
        "word_embeddings_sha256": read_checkpoint(TRAINED_DIR / "clsr.pt")["pretrained"][
            "text_encoder"], "step": 7}
    path = tmp_path / "old.pt"
    torch.save(old, path)
    with pytest.raises(ValueError, match="older format.*speechrag.train.upgrade"):
        ClsrModel.load(path, text)
    done = subprocess.run([sys.executable, "-m", "speechrag.train.upgrade", str(path),
                           str(tmp_path / "new.pt")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = ClsrModel.load(tmp_path / "new.pt", text)
    assert loaded.config == model.config  # the old defaults were filled in, then moved
    payload = read_checkpoint(tmp_path / "new.pt")
    assert payload["step"] == 7 and payload["replaces_sha256"]
    states, mask = torch.randn(1, 120, 384), torch.ones(1, 120, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(loaded(states, mask)["speech_emb"],
                                   model(states, mask)["speech_emb"])


def test_pretrained_parts_that_changed_are_refused(tmp_path: Path, text: TextEncoder) -> None:
    model = SealModel.load(TRAINED_DIR / "seal.pt", text)
    payload = read_checkpoint(TRAINED_DIR / "seal.pt")
    payload["pretrained"]["whisper"] = "0" * 64
    torch.save(payload, tmp_path / "seal.pt")
    with pytest.raises(ValueError, match="another copy of whisper-base"):
        SealModel.load(tmp_path / "seal.pt", text)
    model.save(tmp_path / "again.pt", extra={"note": "x"})
    again = read_checkpoint(tmp_path / "again.pt", "seal")
    assert again["note"] == "x" and again["pretrained"] == read_checkpoint(
        TRAINED_DIR / "seal.pt")["pretrained"]


def test_the_whisper_digest_is_the_verified_asset_checksum(tmp_path: Path) -> None:
    """A verified asset's recorded checksum names it (the GPU machine's encoder-only copy
    records the full file's); a plain directory is hashed."""
    from speechrag.assets import WHISPER_BASE_SHA256
    from speechrag.models.trained import file_sha256, whisper_digest

    assert whisper_digest("whisper-base") == WHISPER_BASE_SHA256
    plain = tmp_path / "ct2"
    plain.mkdir()
    (plain / "model.bin").write_bytes(b"weights")
    assert whisper_digest(str(plain)) == file_sha256(plain / "model.bin")
    (plain / ".sha256-ok").write_text("ab" * 32 + "\n")
    assert whisper_digest(str(plain)) == "ab" * 32
