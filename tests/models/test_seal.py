from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechrag.models.alignment import AlignmentConfig
from speechrag.models.seal import SealConfig, SealModel, SpeechAdaptor
from speechrag.models.text_encoder import TextEncoder

from .conftest import QUESTIONS

SMALL = SealConfig(whisper="whisper-tiny.en", d_encoder=384, d_hidden=256, dropout=0.0)


def test_untrained_projection_is_the_text_encoder(text: TextEncoder) -> None:
    model = SealModel(SMALL, text).eval()
    with torch.no_grad():
        ours = model.encode_text(QUESTIONS)
    torch.testing.assert_close(ours, torch.from_numpy(text.encode(QUESTIONS)), atol=1e-6,
                               rtol=1e-5)


def test_adaptor_ignores_padding() -> None:
    torch.manual_seed(0)
    adaptor = SpeechAdaptor(8, 6, k=4, d_hidden=16, dropout=0.0).eval()
    states = torch.randn(2, 10, 8)
    mask = torch.tensor([[True] * 10, [True] * 7 + [False] * 3])
    junk = states.clone()
    junk[1, 7:] = 100.0
    layers, m = adaptor(junk, mask)
    assert [x.shape for x in layers] == [(2, 3, 6), (2, 3, 6)]
    assert m.tolist() == [[True] * 3, [True, True, False]]
    alone, _ = adaptor(states[1:, :7], mask[1:, :7])
    for a, b in zip(layers, alone, strict=True):
        torch.testing.assert_close(a[1, :2], b[0])
        assert torch.all(a[1, 2] == 0)


@pytest.mark.parametrize("alignment", [
    AlignmentConfig(similarity="cosine", layers=((-1, -1),)),
    AlignmentConfig(similarity="wasserstein", layers=((0, 3), (1, 6)), iters=10),
], ids=["cosine-last", "wasserstein-all"])
def test_learns_to_align_real_speech(text: TextEncoder, batch: dict, tmp_path: Path,
                                     alignment: AlignmentConfig) -> None:
    """Both stages lower their losses on three real utterances; after training each
    utterance is nearest to its own question; the checkpoint reloads exactly."""
    torch.manual_seed(0)
    config = SealConfig(**{**SMALL.__dict__, "alignment": alignment})
    model = SealModel(config, text).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for step in range(60):
        parts = model.training_loss(**batch, contrastive=step >= 30)
        history.append({k: float(v.detach()) for k, v in parts.items()})
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    assert all(not p.requires_grad for p in model.text_model.parameters())
    assert history[29]["align"] < history[0]["align"]
    assert history[30]["nll"] > 0 and history[-1]["nll"] < history[30]["nll"]
    model.eval()
    with torch.no_grad():
        speech = model(batch["states"], batch["state_mask"])["speech_emb"]
        queries = model.encode_text(QUESTIONS)
    assert torch.equal(torch.argmax(queries @ speech.T, dim=1), torch.arange(3))
    path = tmp_path / "seal.pt"
    model.save(path)
    assert path.stat().st_size < 8 * 2**20  # trained parts only
    loaded = SealModel.load(path, text)
    with torch.no_grad():
        again = loaded(batch["states"], batch["state_mask"])["speech_emb"]
    torch.testing.assert_close(again, speech)


def test_config_round_trip_and_unknown_keys(tmp_path: Path, text: TextEncoder) -> None:
    config = SealConfig(alignment=AlignmentConfig("wasserstein", ((0, 0), (1, 6))))
    assert SealConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown key"):
        SealConfig.from_dict({"downsampel": 2})
    with pytest.raises(ValueError, match="alignment config"):
        SealConfig.from_dict({"alignment": {"similarity": "cosine", "layer": 3}})
    bogus = tmp_path / "clsr.pt"
    torch.save({"arch": "clsr", "format": 2, "config": {}, "state": {}}, bogus)
    with pytest.raises(ValueError, match="a clsr checkpoint, not a seal one"):
        SealModel.load(bogus, text)


def test_checkpoint_serves_audio_and_text_indexes(text: TextEncoder, speech_dir: Path,
                                                  tmp_path: Path) -> None:
    """A SEAL checkpoint given as --model indexes speech and text documents; written
    queries over text behave as the text encoder (identity projection at start);
    spoken queries search both; a changed checkpoint is refused."""
    import speechrag
    from speechrag.index import IndexConfigError
    from speechrag.segment import SegmenterConfig

    from ..conftest import TOPICS, speak

    ckpt = tmp_path / "seal.pt"
    SealModel(SMALL, text).save(ckpt)
    seg = SegmenterConfig(window_s=10, hop_s=5)
    report = speechrag.index_audio([speech_dir], tmp_path / "audio-ix", model=str(ckpt),
                                   segmenter=seg)
    assert len(report.indexed) == 3 and not report.failed
    index, _ = speechrag.open_index(tmp_path / "audio-ix")
    assert index.config.model["kind"] == "seal"
    assert all(r["text"] is None for r in index.rows())  # SEAL decodes no words
    question = speak("which instrument has four strings", tmp_path / "q.wav")
    hits = speechrag.search_audio(tmp_path / "audio-ix", question, k=2)
    assert len(hits) == 2 and all(h.start is not None for h in hits)

    docs = speechrag.index_texts(list(TOPICS.items()), tmp_path / "text-ix", model=str(ckpt))
    assert sorted(docs.indexed) == sorted(TOPICS)
    assert speechrag.search(tmp_path / "text-ix", "a bowed string instrument", k=1)[0].source \
        == "violin"
    assert len(speechrag.search_audio(tmp_path / "text-ix", question, k=3)) == 3
    with open(ckpt, "ab") as f:
        f.write(b"\0")
    with pytest.raises((IndexConfigError, ValueError), match="changed|built with model"):
        speechrag.index_texts([("x", "y")], tmp_path / "text-ix", model=str(ckpt))


def test_shipped_checkpoint_answers_a_spoken_question(tmp_path: Path) -> None:
    """`--model seal` is the trained checkpoint in the package: a spoken question finds
    its passage among written ones, and a written question does too."""
    import speechrag
    from speechrag.retrievers import TRAINED_DIR, preset_names, resolve_spec

    from ..conftest import TOPICS, speak

    assert "seal" in preset_names() and resolve_spec("seal")["kind"] == "seal"
    model = SealModel.load(TRAINED_DIR / "seal.pt")
    assert model.config.whisper == "whisper-base"
    speechrag.index_texts(list(TOPICS.items()), tmp_path / "ix", model="seal")
    question = speak("which wooden instrument is played with a bow", tmp_path / "q.wav")
    assert speechrag.search_audio(tmp_path / "ix", question, k=1)[0].source == "violin"
    assert speechrag.search(tmp_path / "ix", "hot lava and ash", k=1)[0].source == "volcano"


def test_attention_pool_starts_as_the_mean_and_learns_weights(text: TextEncoder,
                                                              batch: dict) -> None:
    """Zero scores pool exactly like the mean (so a mean-pooling checkpoint seeds it
    unchanged); padding gets no weight; stage-2 training moves the scores."""
    mean = SealModel(SMALL, text).eval()
    attn = SealModel(SealConfig(**{**SMALL.__dict__, "pool": "attention"}), text).eval()
    attn.load_state_dict(mean.state_dict(), strict=False)
    with torch.no_grad():
        a = mean(batch["states"], batch["state_mask"])["speech_emb"]
        b = attn(batch["states"], batch["state_mask"])["speech_emb"]
        torch.testing.assert_close(a, b)
        x = torch.randn(2, 5, text.dim)
        attn.pool_score.weight.normal_()
        m = torch.tensor([[True] * 5, [True, True, False, False, False]])
        pooled = attn.pool(x, m)
        x[1, 2:] = 1e4  # padding changes: the pool must not
        torch.testing.assert_close(attn.pool(x, m), pooled)
    torch.manual_seed(0)
    model = SealModel(SealConfig(**{**SMALL.__dict__, "pool": "attention"}), text).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(3):
        parts = model.training_loss(**batch, contrastive=True)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    assert model.pool_score.weight.abs().sum() > 0
    with pytest.raises(ValueError, match="pool must be"):
        SealConfig.from_dict({"pool": "max"})


def test_defaults_are_the_shipped_model() -> None:
    from speechrag.models.trained import read_checkpoint
    from speechrag.retrievers import TRAINED_DIR

    shipped = read_checkpoint(TRAINED_DIR / "seal.pt", "seal")
    assert SealConfig.from_dict(shipped["config"]) == SealConfig()
