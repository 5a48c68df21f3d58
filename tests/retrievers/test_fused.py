"""CLSR and SEAL fused (``--model clsr+seal``): one vector whose inner products are the
weighted sum of the two models' cosines, on real speech, in an index and a search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechrag.audio import SAMPLE_RATE
from speechrag.segment import Segment, SegmenterConfig
from tests.conftest import TOPICS


@pytest.fixture(scope="module")
def fused():
    from speechrag.retrievers import load_retriever

    return load_retriever("clsr+seal")


def test_preset_names_both_shipped_checkpoints_with_checksums(fused) -> None:
    from speechrag.retrievers import TRAINED_DIR, preset_names, resolve_spec, spec_of
    from speechrag.retrievers.trained import file_sha256

    assert "clsr+seal" in preset_names()
    spec = resolve_spec("clsr+seal")
    assert spec["clsr"] == str((TRAINED_DIR / "clsr.pt").resolve())
    assert spec["seal_sha256"] == file_sha256(TRAINED_DIR / "seal.pt")
    assert spec_of(fused) == spec  # what an index stores is what the name resolves to
    assert fused.dim == fused.clsr.text.dim + fused.seal.text.dim
    assert fused.seal.text is fused.clsr.text  # one MiniLM in memory, not two


def test_scores_are_the_weighted_sum_of_both_models(fused, speech_dir: Path) -> None:
    """On real speech: unit vectors whose inner product is w cos_clsr + (1 - w) cos_seal
    for text -> speech and speech -> speech, and CLSR's rough transcript. When one model
    trained Whisper's top blocks, the other runs Whisper's own top blocks apart from the
    encoder's pass (share_states): the same weights, rounded apart in bf16, so the
    tolerance is that rounding's (1e-3), far below a wrong weight's error (~0.1)."""
    import soundfile as sf

    from speechrag.retrievers import load_retriever

    clsr, seal = load_retriever("clsr"), load_retriever("seal")
    segs = []
    for name in TOPICS:
        samples = sf.read(str(speech_dir / f"{name}.wav"), dtype="float32")[0]
        segs.append(Segment(name, 0.0, len(samples) / SAMPLE_RATE, samples))
    questions = ["hot lava and ash", "a wooden instrument played with a bow"]
    vf, tf = fused.encode_segments(segs)
    vc, tc = clsr.encode_segments(segs)
    vs, _ = seal.encode_segments(segs)
    np.testing.assert_allclose(np.linalg.norm(vf, axis=1), 1.0, atol=1e-5)
    assert tf == tc and all(t for t in tf)
    w = fused.config.clsr_weight
    tol = 1e-3 if fused.clsr.config.encoder_layers != seal.model.config.encoder_layers else 2e-4
    qf, qc, qs = (r.encode_text(questions) for r in (fused, clsr, seal))
    np.testing.assert_allclose(qf @ vf.T, w * (qc @ vc.T) + (1 - w) * (qs @ vs.T), atol=tol)
    audio = [segs[2].samples]
    (af, wf), (ac, wc), (as_, ws) = (r.encode_query_audio(audio) for r in (fused, clsr, seal))
    np.testing.assert_allclose(af @ vf.T, w * (ac @ vc.T) + (1 - w) * (as_ @ vs.T), atol=tol)
    # the words heard: CLSR's rough transcript, none from SEAL
    assert wf == wc == [tc[2]] and ws == [None]


def test_indexes_and_finds_spoken_passages(fused, speech_dir: Path, tmp_path: Path) -> None:
    import speechrag

    report = speechrag.index_audio([speech_dir], tmp_path / "ix", model="clsr+seal",
                                   segmenter=SegmenterConfig(window_s=40, hop_s=20))
    assert len(report.indexed) == 3 and not report.failed
    for question, topic in [("hot lava and ash from a magma chamber", "volcano"),
                            ("a wooden instrument played with a bow", "violin"),
                            ("flour and water baked in an oven", "bread")]:
        top = speechrag.search(tmp_path / "ix", question, k=1)[0]
        assert top.source.endswith(f"{topic}.wav") and top.text, (question, top)


def test_bad_fusion_specs_are_refused_by_name(tmp_path: Path) -> None:
    from speechrag.retrievers import TRAINED_DIR, load_retriever

    bad = tmp_path / "swapped.json"
    bad.write_text(json.dumps({"kind": "fusion", "clsr": "seal", "seal": "clsr"}))
    with pytest.raises(ValueError, match="'clsr' must be a clsr checkpoint"):
        load_retriever(str(bad))
    missing = tmp_path / "half.json"
    missing.write_text(json.dumps({"kind": "fusion", "clsr": "clsr"}))
    with pytest.raises(ValueError, match="names its 'seal' checkpoint"):
        load_retriever(str(missing))
    weight = tmp_path / "weight.json"
    weight.write_text(json.dumps({"kind": "fusion", "clsr": str(TRAINED_DIR / "clsr.pt"),
                                  "seal": "seal", "clsr_weight": 1.5}))
    with pytest.raises(ValueError, match="clsr_weight must be in"):
        load_retriever(str(weight))


def test_frozen_encoder_model_reads_states_below_the_others_trained_blocks(
        speech_dir: Path) -> None:
    """A frozen-encoder model fused with one that trained Whisper's top k blocks gets
    Whisper's own top k, frozen: on states below them it embeds as on the whole
    encoder's states. Two different trained depths are refused by name."""
    import soundfile as sf
    import torch

    from speechrag.models.seal import SealConfig, SealModel
    from speechrag.models.speech_states import SpeechStates
    from speechrag.models.text_encoder import TextEncoder
    from speechrag.retrievers.fused import share_states

    text = TextEncoder()
    tiny = {"whisper": "whisper-tiny.en", "d_encoder": 384}
    frozen = SealModel(SealConfig(**tiny), text).eval()
    trained = SealModel(SealConfig(**tiny, encoder_layers=2), text).eval()
    clip = [sf.read(str(speech_dir / "violin.wav"), dtype="float32")[0]]
    with torch.no_grad():
        reference = frozen(*SpeechStates("whisper-tiny.en", dtype="float32").clips(clip))
        assert share_states(trained, frozen, ("a.pt", "b.pt")) == 2
        assert frozen.encoder_top is not None and not frozen.encoder_top.training
        below = SpeechStates("whisper-tiny.en", dtype="float32", trained_top=2)
        lifted = frozen(*below.clips(clip))
    torch.testing.assert_close(lifted["speech_emb"], reference["speech_emb"], atol=1e-4,
                               rtol=1e-4)
    other = SealModel(SealConfig(**tiny, encoder_layers=1), text)
    with pytest.raises(ValueError, match=r"a\.pt and c\.pt trained different numbers"):
        share_states(trained, other, ("a.pt", "c.pt"))


def test_a_per_piece_clsr_and_seal_share_one_piece_pass(
        piece_clsr: Path, window_40s: Segment, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside a CLSR whose top blocks attend per piece, SEAL's copy of Whisper's top
    blocks runs per piece too, both in the piece encoder: SEAL then reads exactly the
    states it reads alone (the whole encoder per piece), and the fused scores are the
    weighted sum of the two models' on a 40 s window, to fp32 rounding."""
    from speechrag.retrievers import TRAINED_DIR, from_spec

    monkeypatch.setenv("SPEECHRAG_ENCODER_DTYPE", "float32")
    fused = from_spec({"kind": "fusion", "clsr": str(piece_clsr),
                       "seal": str(TRAINED_DIR / "seal.pt"), "clsr_weight": 0.8})
    assert fused.stacked and fused.speech.top is not None
    assert fused.clsr.encoder_top is None and fused.seal.encoder_top is None
    clsr = from_spec({"kind": "clsr", "checkpoint": str(piece_clsr)})
    seal = from_spec({"kind": "seal", "checkpoint": str(TRAINED_DIR / "seal.pt")})
    (vf, tf), (vc, tc), (vs, _) = (r.encode_segments([window_40s])
                                   for r in (fused, clsr, seal))
    assert tf == tc
    questions = ["hot lava and ash", "a wooden instrument played with a bow"]
    qf, qc, qs = (r.encode_text(questions) for r in (fused, clsr, seal))
    np.testing.assert_allclose(qf @ vf.T, 0.8 * (qc @ vc.T) + 0.2 * (qs @ vs.T), atol=1e-5)
    assert fused.speech.encoded_s == 40.0  # one pass for both models
