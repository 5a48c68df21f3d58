"""How an index's checkpoint is verified: a changed or missing file is refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from speechrag.retrievers import TRAINED_DIR, from_spec
from speechrag.retrievers.trained import CheckpointSpec, file_sha256, verified


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


def test_an_index_built_with_the_format_1_file_opens_with_the_converted_one() -> None:
    """The shipped SEAL was converted to format 2 (same weights): an index that recorded
    the old file's checksum still opens, and keeps the checksum it recorded. (The shipped
    CLSR was retrained since: an index built with an earlier one is refused, above.)"""
    from speechrag.models.trained import read_checkpoint

    path = TRAINED_DIR / "seal.pt"
    (old,) = read_checkpoint(path)["replaces_sha256"]
    assert old != file_sha256(path)
    recorded = CheckpointSpec(str(path.resolve()), old)
    assert verified(recorded) == recorded
    assert "replaces_sha256" not in read_checkpoint(TRAINED_DIR / "clsr.pt")


def test_the_index_records_the_encoder_piece_and_refuses_another(
        speech_dir: Path, tmp_path: Path) -> None:
    """The Whisper piece length shapes the end-to-end vectors: an index records it, and
    adding audio encoded in other pieces is refused, not mixed in; an index written
    before it was recorded opens as the 20 s every release used."""
    import json

    import speechrag
    from speechrag.index import CONFIG_FILE, Index, IndexConfigError
    from speechrag.retrievers import load_retriever
    from speechrag.segment import SegmenterConfig

    seg = SegmenterConfig(window_s=10, hop_s=5)
    ix = tmp_path / "ix"
    speechrag.index_audio([speech_dir / "volcano.wav"], ix, model="seal", segmenter=seg)
    assert Index.open(ix).config.encoding == {"piece_s": 20.0}
    other = load_retriever("seal")
    other.speech.piece_s = 10.0
    with pytest.raises(IndexConfigError, match="piece_s"):
        Index.open(ix).add_files([str(speech_dir / "violin.wav")], other)
    with pytest.raises(IndexConfigError, match="piece_s"):
        Index.create(ix, other, seg)
    data = json.loads((ix / CONFIG_FILE).read_text())
    del data["encoding"]
    (ix / CONFIG_FILE).write_text(json.dumps(data))
    assert Index.open(ix).config.encoding == {"piece_s": 20.0}
    report = speechrag.index_audio([speech_dir / "violin.wav"], ix)
    assert len(report.indexed) == 1


def test_a_per_piece_clsr_indexes_what_it_trained_on(
        piece_clsr: Path, segment_clsr: Path, window_40s,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLSR whose top blocks attend per piece (``encoder_top_scope: "piece"``): the
    retriever runs them in the piece encoder (each piece once), and a 40 s window gets
    the vector the model computes in training, where it splits the window itself."""
    import numpy as np
    import torch

    from speechrag.models.clsr import ClsrModel
    from speechrag.models.speech_states import SpeechStates

    monkeypatch.setenv("SPEECHRAG_ENCODER_DTYPE", "float32")
    retriever = from_spec({"kind": "clsr", "checkpoint": str(piece_clsr)})
    assert retriever.model.encoder_top is None and retriever.speech.top is not None
    vecs, _ = retriever.encode_segments([window_40s])

    model = ClsrModel.load(piece_clsr)  # as in training: the model splits the window
    assert model.encoder_top is not None and model.encoder_top.scope == "piece"
    states, mask = SpeechStates("whisper-base", trained_top=2).segments([window_40s])
    with torch.no_grad():
        ref = model(states, mask)["speech_emb"].numpy()
    np.testing.assert_allclose(vecs, ref, atol=1e-4)
    # scope "segment": the blocks stay in the model and run on the whole window
    segment = from_spec({"kind": "clsr", "checkpoint": str(segment_clsr)})
    assert segment.speech.top is None and segment.model.encoder_top.scope == "segment"
    assert not np.allclose(segment.encode_segments([window_40s])[0], vecs, atol=1e-4)
    shipped = from_spec({"kind": "clsr", "checkpoint": str(TRAINED_DIR / "clsr.pt")})
    assert shipped.model.config.encoder_top_scope == "piece"
