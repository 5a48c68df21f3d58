"""The shipped CLSR (models/clsr.py, the CTC aligner): config, pooling, training on real
utterances, checkpoints, the shipped file, and a runtime that never imports research/."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from speechrag import audio
from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.models.losses import IGNORE
from speechrag.models.speech_states import pad_states
from speechrag.models.text_encoder import TextEncoder
from speechrag.models.whisper_encoder import LogMel, WhisperEncoder

from ..conftest import TOPICS
from .conftest import pad_ids

# the shipped architecture at test size: Whisper tiny.en, a linear CTC head
SMALL = ClsrConfig.from_dict({
    "whisper": "whisper-tiny.en", "d_encoder": 384, "d_model": 64, "state_stride": 3,
    "state_pooling": "mean", "time_encoding": True, "ctc_blocks": 0, "ctc_conv_blocks": 0,
    "rare_tokens": "unk", "encoder_layers": 0})


def test_defaults_are_the_shipped_model() -> None:
    from speechrag.models.trained import read_checkpoint
    from speechrag.retrievers import TRAINED_DIR

    shipped = read_checkpoint(TRAINED_DIR / "clsr.pt", "clsr")
    # one exception: the default scope stays "segment", what a checkpoint saved before the
    # field was trained with; the shipped model's top blocks attend per piece
    assert ClsrConfig.from_dict(shipped["config"]) == replace(ClsrConfig(),
                                                              encoder_top_scope="piece")
    assert ClsrConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="unknown key"):
        ClsrConfig.from_dict({"whsiper": "whisper-base"})
    with pytest.raises(ValueError, match="lr|vq must be bool"):
        ClsrConfig.from_dict({"vq": "yes"})


@pytest.mark.parametrize("pooling", ["mean", "stack"])
def test_pooling_ignores_padding(text: TextEncoder, pooling: str) -> None:
    model = ClsrModel(ClsrConfig.from_dict({**SMALL.to_dict(), "state_pooling": pooling}), text)
    states = torch.randn(2, 7, 384)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    h, m = model.project(states, mask)
    assert h.shape[1] == 3 and m.tolist() == [[True] * 3, [True, True, False]]
    assert torch.all(h[1, 2] == 0)
    alone, _ = model.project(states[1:, :4], mask[1:, :4])
    torch.testing.assert_close(h[1, :2], alone[0])
    # only stacking tells the order of the states inside a group
    swapped, _ = model.project(states[:, [1, 0, 2, 3, 4, 5, 6]], mask)
    assert torch.allclose(swapped[:, 0], h[:, 0]) == (pooling == "mean")
    torch.testing.assert_close(swapped[:, 1:], h[:, 1:])


def test_rare_tokens_are_spelled_with_kept_pieces(text: TextEncoder, batch: dict) -> None:
    """With ``rare_tokens = "spell"`` a target token outside the kept vocabulary becomes
    kept pieces that read the same, never [UNK]; "unk" keeps the old mapping."""
    from speechrag.train.data import train_vocabulary

    vocab = train_vocabulary(text, 20)
    tok = text.model.tokenizer
    config = ClsrConfig.from_dict({**SMALL.to_dict(), "rare_tokens": "spell"})
    torch.manual_seed(0)
    model = ClsrModel(config, text, vocab).train()
    targets = batch["targets"]
    kept = set(model.vocab_ids.tolist())
    rare = {i for i in targets.flatten().tolist() if i != IGNORE and i not in kept}
    assert rare  # "volcano", "magma", ... are rarer than 20 in the train split
    spelled = model._spelled(targets)
    assert spelled.shape[1] > targets.shape[1]
    for before, after in zip(targets.tolist(), spelled.tolist(), strict=True):
        after = [i for i in after if i != IGNORE]
        assert set(after) <= kept - {tok.unk_token_id}
        assert tok.decode(after) == tok.decode([i for i in before if i != IGNORE])
    parts = model.training_loss(**batch)
    parts["loss"].backward()
    assert torch.isfinite(parts["loss"])
    plain = ClsrModel(SMALL, text, vocab)
    assert plain.to_local[sorted(rare)[0]] == plain.to_local[tok.unk_token_id]
    with pytest.raises(ValueError, match="rare_tokens must be one of"):
        ClsrConfig.from_dict({**SMALL.to_dict(), "rare_tokens": "drop"})


def test_trained_top_encoder_block(text: TextEncoder, speech_dir: Path) -> None:
    """With ``encoder_layers`` = 1 CLSR runs Whisper's last block itself on the states
    below it: at the start it decodes exactly what the same weights do on the whole
    encoder's states, and the stage-1 loss reaches the block."""
    enc, mel = WhisperEncoder.load("whisper-tiny.en"), LogMel()
    with torch.no_grad():
        mels = [mel(audio.load(speech_dir / f"{k}.wav"))[None] for k in TOPICS]
        whole = pad_states([enc(m)[0] for m in mels])
        below = pad_states([enc(m, n_blocks=3)[0] for m in mels])
    torch.manual_seed(0)
    plain = ClsrModel(SMALL, text).eval()
    top = ClsrModel(ClsrConfig.from_dict({**SMALL.to_dict(), "encoder_layers": 1}), text)
    missing, unexpected = top.load_state_dict(plain.trained_state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("encoder_top.", "text_model.", "vq.word",
                                                "ctc.word")) for k in missing)
    top.eval()
    with torch.no_grad():
        a, b = plain(*whole), top(*below)
    torch.testing.assert_close(b["speech_emb"], a["speech_emb"], atol=1e-4, rtol=1e-4)
    assert torch.equal(b["token_ids"], a["token_ids"])
    targets = pad_ids(text.token_ids(list(TOPICS.values())))
    parts = top.train().training_loss(*below, targets=targets, query_ids=targets.clamp(min=0),
                                      query_lengths=torch.tensor([5, 5, 5]), contrastive=False)
    parts["loss"].backward()
    assert top.encoder_top.blocks[0].qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", [{}, {"state_pooling": "stack", "ctc_blocks": 1},
                                     {"ctc_conv_blocks": 1, "ctc_conv_kernel": 3}],
                         ids=["linear", "stacked-ffn", "conv"])
def test_ctc_aligner_learns_real_utterances_and_round_trips(text: TextEncoder, batch: dict,
                                                            tmp_path: Path, variant: dict) -> None:
    """aligner "ctc": no CIF or decoder; CTC pretraining on three real utterances makes
    the greedy path spell them, the contrastive stage trains through the VQ adaptor, and a
    checkpoint reloads to the same tokens and embeddings without the frozen tables."""
    from speechrag.metrics import wer

    config = ClsrConfig.from_dict({**SMALL.to_dict(), **variant})
    torch.manual_seed(0)
    model = ClsrModel(config, text).train()
    assert not hasattr(model, "cif") and not hasattr(model, "decoder")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    ctc = []
    for _ in range(150):
        parts = model.training_loss(**batch, contrastive=False)
        ctc.append(float(parts["ctc"].detach()))
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    assert ctc[-1] < 0.1 * ctc[0] and float(parts["nll"]) == 0
    model.eval()
    with torch.no_grad():
        out = model(batch["states"], batch["state_mask"])
    tok = text.model.tokenizer
    decoded = [tok.decode(ids[:n].tolist(), skip_special_tokens=True)
               for ids, n in zip(out["token_ids"], out["n_tokens"], strict=True)]
    assert wer(list(TOPICS.values()), decoded) < 0.2, decoded
    model.train()  # the contrastive loss alone reaches the head through the one-hot
    opt.zero_grad()
    parts = model.training_loss(**batch, contrastive=True)
    parts["nll"].backward()
    assert float(parts["nll"]) > 0 and model.ctc.to_word_space.weight.grad.abs().sum() > 0
    path = tmp_path / "ctc.pt"
    model.eval().save(path)
    assert not any(k.startswith("ctc.word_embeddings") for k in model.trained_state_dict())
    loaded = ClsrModel.load(path, text)
    with torch.no_grad():
        a = model(batch["states"], batch["state_mask"])
        b = loaded(batch["states"], batch["state_mask"])
    assert torch.equal(a["token_ids"], b["token_ids"])
    torch.testing.assert_close(a["speech_emb"], b["speech_emb"])


@pytest.mark.parametrize("setting", [{"aligner": "rnnt"}, {"cif": {"ctc_weight": 0.3}},
                                     {"cif": {"glancing_ratio": 0.75}}])
def test_ctc_aligner_refuses_settings_it_cannot_honour(setting: dict) -> None:
    with pytest.raises(ValueError, match="aligner"):
        ClsrConfig.from_dict({**SMALL.to_dict(), **setting})
    with pytest.raises(ValueError, match="ctc_conv_kernel must be odd"):
        ClsrConfig.from_dict({**SMALL.to_dict(), "ctc_conv_kernel": 6})


def test_unknown_pooling_is_refused() -> None:
    with pytest.raises(ValueError, match="state_pooling must be one of .*, not 'max'"):
        ClsrConfig.from_dict({**SMALL.to_dict(), "state_pooling": "max"})


def test_shipped_checkpoint_finds_spoken_passages(speech_dir: Path, tmp_path: Path) -> None:
    """`--model clsr` is the trained checkpoint in the package (the CTC aligner): it
    indexes real speech, its rough transcripts are mostly the words spoken, and written
    questions find their recordings."""
    import speechrag
    from speechrag.metrics import wer
    from speechrag.retrievers import TRAINED_DIR, preset_names, resolve_spec
    from speechrag.segment import SegmenterConfig

    assert "clsr" in preset_names() and resolve_spec("clsr")["kind"] == "clsr"
    model = ClsrModel.load(TRAINED_DIR / "clsr.pt")
    assert model.config.whisper == "whisper-base" and model.config.aligner == "ctc"
    # trained parts only: the CTC head (1.8M weights) and Whisper's top blocks that it
    # trained (3.15M weights each, stored in fp16); the frozen MiniLM alone is ~90 MB
    assert (TRAINED_DIR / "clsr.pt").stat().st_size < 24 * 2**20
    state = torch.load(TRAINED_DIR / "clsr.pt", weights_only=True)["state"]
    assert not any(k.startswith(("text_model.", "ctc.word_embeddings", "vq.")) for k in state)
    blocks = {k.split(".")[2] for k in state if k.startswith("encoder_top.blocks.")}
    assert blocks == {str(i) for i in range(model.config.encoder_layers)}
    assert all(v.dtype == torch.float16 for k, v in state.items()
               if k.startswith("encoder_top."))
    report = speechrag.index_audio([speech_dir], tmp_path / "ix", model="clsr",
                                   segmenter=SegmenterConfig(window_s=40, hop_s=20))
    assert len(report.indexed) == 3 and not report.failed
    hits = {h.source.split("/")[-1].removesuffix(".wav"): h
            for h in speechrag.search(tmp_path / "ix", "hot lava and ash", k=3)}
    assert wer(list(TOPICS.values()), [hits[k].text for k in TOPICS]) < 0.5
    for question, topic in [("hot lava and ash from a magma chamber", "volcano"),
                            ("a wooden instrument played with a bow", "violin"),
                            ("flour and water baked in an oven", "bread")]:
        top = speechrag.search(tmp_path / "ix", question, k=1)[0]
        assert top.source.endswith(f"{topic}.wav"), (question, top)


def test_negative_adapter_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="doc_adapter_rank"):
        ClsrConfig.from_dict({"doc_adapter_rank": -1})


def test_the_runtime_never_imports_research_or_training() -> None:
    """Indexing and searching with every shipped model loads none of research/ (CIF, the
    NAR decoder, glancing, the Whisper-decoder probe, LoRA) and none of train/."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        import numpy as np
        from speechrag.retrievers import load_retriever
        clip = np.zeros(16000 * 3, np.float32)
        for name in ("clsr", "seal", "clsr+seal"):
            r = load_retriever(name)
            r.encode_query_audio([clip]); r.encode_text(["a question"])
        loaded = sorted(m for m in sys.modules
                        if m.startswith(("speechrag.research", "speechrag.train")))
        assert not loaded, loaded
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
