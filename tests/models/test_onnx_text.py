from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from speechrag.assets import resolve
from speechrag.models.onnx_text import OnnxTextEncoder, Unsupported, export, onnx_file
from speechrag.models.text_encoder import TextEncoder

TEXTS = ["who invented the telephone?", "Violin", "",
         "Ünïcödé — naïve café façade, 1,024 km² … ok?",
         # past the model's 256-token window: both paths must cut it the same way
         " ".join(f"word{i}" for i in range(400))]


@pytest.fixture(scope="module")
def both() -> tuple[TextEncoder, OnnxTextEncoder]:
    return TextEncoder("all-MiniLM-L6-v2"), OnnxTextEncoder("all-MiniLM-L6-v2", batch_size=2)


def test_same_vectors_as_sentence_transformers(both) -> None:
    ref, fast = both
    a, b = fast.encode(TEXTS), ref.encode(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert fast.encode([]).shape == (0, 384)


def test_batches_do_not_change_a_vector(both) -> None:
    """Padding to the longest text of a batch leaves each text's vector as it is alone."""
    _, fast = both
    together = fast.encode(TEXTS)
    alone = np.stack([fast.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_export_is_kept_and_reused() -> None:
    path = export("all-MiniLM-L6-v2")
    assert path == onnx_file("all-MiniLM-L6-v2") and path.is_file()
    mtime = path.stat().st_mtime_ns
    assert export("all-MiniLM-L6-v2").stat().st_mtime_ns == mtime  # not written twice
    assert not list(path.parent.glob("*.tmp*"))  # no half-written export left behind


def _copy_model(tmp_path: Path) -> Path:
    src = Path(resolve("all-MiniLM-L6-v2"))
    dst = tmp_path / "model"
    dst.mkdir()
    for f in src.rglob("*"):
        if f.is_file():
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f, dst / f.relative_to(src))
    return dst


def test_models_it_does_not_take_are_said(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    modules = json.loads((model / "modules.json").read_text())
    (model / "modules.json").unlink()
    (model / "modules.json").write_text(json.dumps(
        modules[:2] + [{"idx": 2, "name": "2", "path": "2_Dense",
                        "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(Unsupported, match="Dense"):
        OnnxTextEncoder(str(model))
    (model / "tokenizer.json").unlink()
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(Unsupported, match="tokenizer.json"):
        OnnxTextEncoder(str(model))
