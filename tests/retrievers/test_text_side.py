from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speechrag.retrievers import from_spec, resolve_spec
from speechrag.retrievers.text_side import TextSide, text_side

QUESTIONS = ["who invented the telephone?", "In which year did the empire fall",
             "what is a volcano"]


@pytest.mark.parametrize("model", ["cascade", "clsr", "seal", "clsr+seal"])
def test_text_side_gives_the_retrievers_vectors(model: str) -> None:
    spec = resolve_spec(model)
    fast = text_side(spec)
    assert isinstance(fast, TextSide)
    full = from_spec(spec)
    a, b = fast.encode_text(QUESTIONS), full.encode_text(QUESTIONS)
    assert fast.dim == full.dim == a.shape[1]
    np.testing.assert_allclose(a, b, atol=1e-5)
    # the same ranking of candidates, not only close numbers
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((200, full.dim)).astype(np.float32)
    assert (np.argsort(-(a @ docs.T), axis=1)[:, :10]
            == np.argsort(-(b @ docs.T), axis=1)[:, :10]).all()


def test_a_changed_checkpoint_is_refused(tmp_path: Path) -> None:
    spec = resolve_spec("seal")
    copy = tmp_path / "seal.pt"
    shutil.copy(spec["checkpoint"], copy)
    with open(copy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="changed since the index was built"):
        text_side({**spec, "checkpoint": str(copy)})


def test_spoken_questions_need_the_speech_side() -> None:
    with pytest.raises(RuntimeError, match="written questions only"):
        text_side(resolve_spec("cascade")).encode_query_audio([np.zeros(16000, np.float32)])


def test_a_written_search_never_loads_torch(tmp_path: Path) -> None:
    """What makes a cold `speechrag search --query` fast: neither torch nor
    sentence-transformers is imported on the way to the hits."""
    import speechrag

    speechrag.index_texts([("a", "The telephone was invented by Bell."),
                           ("b", "Volcanoes erupt lava.")], tmp_path / "idx")
    code = ("import sys\nfrom speechrag.cli import app\n"
            f"app(['search', '--index', {str(tmp_path / 'idx')!r}, '--query', "
            "'who invented the telephone', '--k', '1', '--json'], standalone_mode=False)\n"
            "print('LOADED', sorted(m for m in ('torch', 'sentence_transformers', "
            "'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert '"source": "a"' in out
    assert "LOADED []" in out
