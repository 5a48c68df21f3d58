"""How an index's checkpoint is verified: a changed or missing file is refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from speechrag.checkpoints import CheckpointSpec, file_sha256, verified
from speechrag.retrievers import TRAINED_DIR, from_spec


def test_a_changed_checkpoint_is_refused_with_what_to_do(tmp_path: Path) -> None:
    ckpt = tmp_path / "seal.pt"
    shutil.copy(TRAINED_DIR / "seal.pt", ckpt)
    recorded = verified(CheckpointSpec(str(ckpt)))
    assert recorded.sha256 == file_sha256(ckpt) and Path(recorded.checkpoint).is_absolute()
    assert verified(recorded) == recorded  # unchanged: accepted as it is

    with open(ckpt, "ab") as f:  # e.g. an upgrade shipped a retrained model
        f.write(b"\0")
    with pytest.raises(ValueError, match="changed since the index was built") as err:
        from_spec({"kind": "seal", **recorded.to_dict()})
    assert str(ckpt) in str(err.value) and "index the audio again" in str(err.value)

    ckpt.unlink()
    with pytest.raises(ValueError, match="checkpoint not found"):
        verified(recorded)


def test_a_file_that_is_not_a_checkpoint_is_an_error_naming_it(tmp_path: Path) -> None:
    import torch

    from speechrag.retrievers import resolve_spec

    shipped = (TRAINED_DIR / "clsr.pt").read_bytes()
    cut = tmp_path / "cut.pt"  # an interrupted download or copy
    cut.write_bytes(shipped[: len(shipped) // 2])
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 40)
    other = tmp_path / "other.pt"  # a real torch file, but not ours
    torch.save({"weights": torch.zeros(3)}, other)
    for path, why in ((cut, "not a readable speechrag checkpoint"),
                      (noise, "not a readable speechrag checkpoint"),
                      (other, "no config and trained weights")):
        with pytest.raises(ValueError, match=why) as err:
            from_spec(resolve_spec(str(path)))
        assert str(path) in str(err.value)
