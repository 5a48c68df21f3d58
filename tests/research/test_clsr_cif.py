"""CLSR with the paper's CIF aligner and NAR decoder (research/clsr_cif.py): it trains on
real utterances, round-trips through a checkpoint, indexes and searches, and its
auxiliary losses, glancing sampler and Whisper-decoder start behave."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechrag import audio
from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.models.losses import IGNORE
from speechrag.models.text_encoder import TextEncoder
from speechrag.research.clsr_cif import ClsrCifModel

from ..conftest import TOPICS
from ..models.conftest import pad_ids  # noqa: F401

DECODER = {"d_model": 64, "n_layer": 2, "n_head": 2, "d_ff": 128, "dropout": 0.0}
# the paper's model at test size (format 1's defaults for what the CTC model changed)
SMALL = ClsrConfig.from_dict({
    "whisper": "whisper-tiny.en", "d_encoder": 384, "d_model": 64, "aligner": "cif",
    "state_stride": 3, "state_pooling": "mean", "time_encoding": True, "ctc_blocks": 0,
    "ctc_conv_blocks": 0, "vocab_min_count": 2, "rare_tokens": "unk", "encoder_layers": 0,
    "cif": {"decoder": DECODER}})


def with_cif(**changes: object) -> ClsrConfig:
    """SMALL with some of its CIF settings changed."""
    return ClsrConfig.from_dict({**SMALL.to_dict(), "cif": {**SMALL.cif, **changes}})


def test_the_config_picks_the_cif_class(text: TextEncoder) -> None:
    model = ClsrModel.build(SMALL, text)
    assert isinstance(model, ClsrCifModel) and model.ctc is None
    assert ClsrConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="cif decoder config"):
        ClsrConfig.from_dict({**SMALL.to_dict(), "cif": {"decoder": {"layers": 3}}})
    with pytest.raises(ValueError, match="cif config: unknown key"):
        ClsrConfig.from_dict({**SMALL.to_dict(), "cif": {"glancing": 0.5}})
    with pytest.raises(ValueError, match="must equal d_model"):
        ClsrConfig.from_dict({**SMALL.to_dict(), "d_model": 128})
    with pytest.raises(ValueError, match="cif settings need aligner 'cif'"):
        ClsrConfig.from_dict({**SMALL.to_dict(), "aligner": "ctc"})
    with pytest.raises(ValueError, match="need aligner 'ctc'"):
        ClsrConfig.from_dict({**SMALL.to_dict(), "ctc_blocks": 1})


def test_forward_shapes(text: TextEncoder, batch: dict) -> None:
    model = ClsrModel.build(SMALL, text).eval()
    with torch.no_grad():
        out = model(batch["states"], batch["state_mask"])
    b, n = out["token_ids"].shape
    assert b == 3 and out["logits"].shape == (3, n, text.word_embeddings.shape[0])
    assert out["speech_emb"].shape == (3, 384)
    torch.testing.assert_close(out["speech_emb"].norm(dim=1), torch.ones(3))
    pooled_mask = batch["state_mask"][:, ::SMALL.state_stride]
    assert out["alphas"].shape == pooled_mask.shape
    assert torch.all(out["alphas"][~pooled_mask] == 0)


@pytest.fixture(scope="module")
def trained(text: TextEncoder, batch: dict, tmp_path_factory) -> tuple[ClsrModel, dict, Path]:
    """120 steps on three real utterances; returns the model, first-step losses, checkpoint."""
    torch.manual_seed(0)
    model = ClsrModel.build(SMALL, text).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    first: dict[str, float] = {}
    for _ in range(120):
        parts = model.training_loss(**batch)
        first = first or {k: float(v.detach()) for k, v in parts.items()}
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    last = {k: float(v.detach()) for k, v in parts.items()}
    path = tmp_path_factory.mktemp("ckpt") / "clsr.pt"
    model.save(path, extra={"step": 120})
    return model.eval(), {"first": first, "last": last}, path


def test_learns_real_utterances(trained) -> None:
    model, losses, _ = trained
    assert all(not p.requires_grad for p in model.text_model.parameters())
    assert losses["last"]["ce"] < 0.3 * losses["first"]["ce"]
    assert losses["last"]["token_acc"] > 0.8
    assert losses["last"]["mae"] < losses["first"]["mae"]


def test_checkpoint_round_trip(trained, text: TextEncoder, batch: dict) -> None:
    model, _, path = trained
    assert path.stat().st_size < 12 * 2**20  # trained parts only
    loaded = ClsrModel.load(path, text)
    with torch.no_grad():
        a = model(batch["states"], batch["state_mask"])
        b = loaded(batch["states"], batch["state_mask"])
    torch.testing.assert_close(a["logits"], b["logits"])
    assert torch.equal(a["token_ids"], b["token_ids"])


def test_checkpoint_indexes_and_searches(trained, speech_dir: Path, tmp_path: Path) -> None:
    import shutil

    import speechrag
    from speechrag.index import IndexConfigError
    from speechrag.segment import SegmenterConfig

    ckpt = tmp_path / "model.pt"
    shutil.copy(trained[2], ckpt)
    seg = SegmenterConfig(window_s=10, hop_s=5)
    report = speechrag.index_audio([speech_dir], tmp_path / "ix", model=str(ckpt),
                                   segmenter=seg)
    assert len(report.indexed) == 3 and not report.failed
    hits = speechrag.search(tmp_path / "ix", "a bowed string instrument", k=3)
    assert len(hits) == 3 and all(isinstance(h.text, str) for h in hits)
    index, _ = speechrag.open_index(tmp_path / "ix")
    assert index.config.model["kind"] == "clsr"
    with open(ckpt, "ab") as f:  # the checkpoint changes under the index
        f.write(b"\0")
    with pytest.raises((IndexConfigError, ValueError), match="changed|built with model"):
        speechrag.index_audio([speech_dir], tmp_path / "ix", model=str(ckpt), segmenter=seg)


def test_restricted_vocabulary(text: TextEncoder, batch: dict, tmp_path: Path) -> None:
    """A decoder over a subset of the tokenizer emits only those ids, maps unseen target
    tokens to [UNK], and its checkpoint carries the subset."""
    seen = sorted({i for row in batch["targets"].tolist() for i in row if i != IGNORE})
    vocab = torch.tensor(seen[:-3] + [1000, 2000])  # three target tokens left out
    torch.manual_seed(0)
    model = ClsrCifModel(SMALL, text, vocab).train()
    unk = text.model.tokenizer.unk_token_id
    assert model.vocab_ids.tolist() == sorted({*vocab.tolist(), unk})
    assert model.to_local[seen[-1]] == model.to_local[unk]
    parts = model.training_loss(**batch)
    assert {"ce", "cif_ce", "mae", "token_acc"} <= set(parts)
    parts["loss"].backward()
    model.eval()
    with torch.no_grad():
        out = model(batch["states"], batch["state_mask"])
    assert out["logits"].shape[-1] == len(model.vocab_ids)
    assert set(out["token_ids"].unique().tolist()) <= set(model.vocab_ids.tolist())
    path = tmp_path / "small-vocab.pt"
    model.save(path)
    loaded = ClsrModel.load(path, text)
    assert torch.equal(loaded.vocab_ids, model.vocab_ids)
    with torch.no_grad():
        again = loaded(batch["states"], batch["state_mask"])
    assert torch.equal(again["token_ids"], out["token_ids"])


@pytest.mark.parametrize("variant", [
    {"align_weight": 0.5, "alignment": {"similarity": "cosine", "layers": [[-1, -1]]}},
    {"align_weight": 0.5, "alignment": {"similarity": "wasserstein", "layers": [[0, 3], [1, 6]],
                                        "iters": 10}},
    {"vq": False},
    {"ctc_weight": 0.3},
], ids=["align-cosine", "align-wasserstein-all", "no-vq", "ctc"])
def test_variants_train(text: TextEncoder, batch: dict, variant: dict) -> None:
    """The alignment loss between CIF/decoder states and the text encoder's states, and
    the ablation without the VQ adaptor, train (their losses fall) and reach the
    projection they add."""
    config = (ClsrConfig.from_dict({**SMALL.to_dict(), **variant}) if "vq" in variant
              else with_cif(**variant))
    torch.manual_seed(0)
    model = ClsrModel.build(config, text).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    key = "align" if "align_weight" in variant else "ctc" if "ctc_weight" in variant else "nll"
    seen = []
    for _ in range(25):
        parts = model.training_loss(**batch, contrastive=True)
        seen.append(float(parts[key].detach()))
        opt.zero_grad()
        parts["loss"].backward()
        for added in (model.align_proj, model.ctc_blank):
            if added is not None:
                assert added.weight.grad is not None
        opt.step()
    assert min(seen[-5:]) < seen[0]


def test_glancing_sampler_trains_and_leaves_inference_alone(text: TextEncoder,
                                                            batch: dict) -> None:
    """With the sampler on, stage 1 reveals targets only where the first pass errs,
    scores CE on the rest, trains the projection of the revealed tokens and learns;
    in eval mode the model decodes in one plain pass, as without it."""
    config = with_cif(glancing_ratio=0.75)
    torch.manual_seed(0)
    model = ClsrModel.build(config, text).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    ce, glanced = [], []
    for _ in range(40):
        parts = model.training_loss(**batch, contrastive=False)
        ce.append(float(parts["ce"].detach()))
        glanced.append(float(parts["glanced"]))
        opt.zero_grad()
        parts["loss"].backward()
        assert model.glance_proj.weight.grad is not None
        assert model.glance_proj.weight.grad.abs().sum() > 0
        opt.step()
    assert 0.5 < glanced[0] <= 0.75  # nearly all wrong at first: about 0.75 revealed
    assert min(ce[-5:]) < ce[0]
    model.eval()
    plain = ClsrModel.build(SMALL, text).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("glance_proj")})
    with torch.no_grad():
        a = model(batch["states"], batch["state_mask"])
        b = plain(batch["states"], batch["state_mask"])
    assert torch.equal(a["token_ids"], b["token_ids"])
    torch.testing.assert_close(a["speech_emb"], b["speech_emb"])


def test_ctc_loss_of_a_padded_batch_is_the_mean_of_its_rows(text: TextEncoder,
                                                            batch: dict) -> None:
    """Padding (of states and of targets) changes nothing: each row scored alone gives
    the same loss."""
    config = with_cif(ctc_weight=0.3)
    torch.manual_seed(0)
    model = ClsrModel.build(config, text).eval()
    targets = batch["targets"]
    local = torch.where(targets == IGNORE, targets, model.to_local[targets.clamp(min=0)])
    with torch.no_grad():
        h, m = model.project(batch["states"], batch["state_mask"])
        both = model.ctc_loss(h, m, local)
        rows = []
        for i in range(len(h)):
            s, n = int(m[i].sum()), int((local[i] != IGNORE).sum())
            rows.append(model.ctc_loss(h[i:i + 1, :s], m[i:i + 1, :s], local[i:i + 1, :n]))
    torch.testing.assert_close(both, torch.stack(rows).mean())
    assert torch.isfinite(both) and both > 0


def test_decoder_starts_from_whisper(text: TextEncoder, batch: dict) -> None:
    """``decoder.init = "whisper"``: the training app's fresh model holds Whisper
    tiny.en's first decoder blocks, its final norm and positions, and reads the states
    through an identity projection; the model still trains from there."""
    from speechrag.research.whisper_decoder import read_whisper_decoder
    from speechrag.train.clsr import build
    from speechrag.train.loop import TrainConfig, param_groups

    config = ClsrConfig.from_dict({**SMALL.to_dict(), "d_model": 384, "cif": {"decoder": {
        "d_model": 384, "n_layer": 2, "n_head": 6, "d_ff": 1536, "dropout": 0.0,
        "init": "whisper"}}})
    model = build(config, text)
    w = read_whisper_decoder("whisper-tiny.en")
    layer = model.decoder.layers.layers[1]
    assert torch.equal(layer.linear1.weight, w["layer_1/ffn/linear_0/weight"])
    assert torch.equal(layer.multihead_attn.in_proj_weight[:384],
                       w["layer_1/attention/linear_0/weight"])
    assert torch.equal(model.decoder.layers.norm.weight, w["layer_norm/gamma"])
    assert torch.equal(model.decoder.positions.weight[:448], w["position_encodings/encodings"])
    assert torch.equal(model.proj.weight, torch.eye(384))
    random = ClsrModel.build(config, text)  # what a checkpoint is loaded into: not initialized
    groups = param_groups(model, TrainConfig(model=config, decoder_lr_scale=0.1))
    assert [g["lr_scale"] for g in groups] == [1.0, 0.1]
    from_whisper = {id(p) for p in groups[1]["params"]}
    assert {n for n, p in model.named_parameters() if id(p) in from_whisper} == {
        n for n, _ in model.named_parameters()
        if n.startswith(("decoder.layers.", "decoder.positions."))}
    assert id(model.decoder.to_word_space.weight) not in from_whisper
    plain = param_groups(ClsrModel.build(SMALL, text), TrainConfig(model=SMALL))
    assert [g["lr_scale"] for g in plain] == [1.0]  # nothing pretrained: one group
    assert not torch.equal(random.decoder.layers.layers[1].linear1.weight, layer.linear1.weight)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    seen = []
    for _ in range(10):
        parts = model.training_loss(**batch, contrastive=False)
        seen.append(float(parts["ce"].detach()))
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    assert seen[-1] < seen[0]


def test_whisper_decoder_init_needs_whisper_shapes(text: TextEncoder) -> None:
    with pytest.raises(ValueError, match="d_model 384, n_head 6, d_ff 1536"):
        ClsrCifModel(with_cif(decoder={**DECODER, "init": "whisper"}),
                     text).init_decoder_from_whisper()
    with pytest.raises(ValueError, match="init must be '' or 'whisper'"):
        with_cif(decoder={**DECODER, "init": "bert"})


def test_document_adapter(trained, text: TextEncoder, batch: dict, tmp_path: Path) -> None:
    """A document adapter changes how speech is embedded as a document, never as a
    question, and its checkpoint adds only the adapter's weights."""
    from speechrag.train.clsr_adapter import with_adapter

    model, _, path = trained
    adapted = with_adapter(ClsrModel.load(path, text), rank=4).eval()
    assert adapted.config.doc_adapter_rank == 4
    with torch.no_grad():
        plain = model(batch["states"], batch["state_mask"])["speech_emb"]
        fresh = adapted(batch["states"], batch["state_mask"])["speech_emb"]
        torch.testing.assert_close(fresh, plain)  # B = 0: no change yet
        for name, p in adapted.doc_encoder.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(std=0.05)
        doc = adapted(batch["states"], batch["state_mask"])["speech_emb"]
        query = adapted(batch["states"], batch["state_mask"], document=False)["speech_emb"]
    assert (doc - plain).abs().max() > 1e-3
    torch.testing.assert_close(query, plain)  # questions keep the frozen encoder
    torch.testing.assert_close(doc.norm(dim=1), torch.ones(3))
    # embed_documents is the forward pass's document side, from token ids
    with torch.no_grad():
        out = adapted(batch["states"], batch["state_mask"])
        again = adapted.embed_documents(out["token_ids"], out["n_tokens"])
    torch.testing.assert_close(again, out["speech_emb"])

    saved = tmp_path / "adapted.pt"
    adapted.save(saved)
    state = torch.load(saved, weights_only=True)["state"]
    added = sorted(set(state) - set(torch.load(path, weights_only=True)["state"]))
    assert added and all(k.startswith("doc_encoder.") and k.endswith(("lora_a", "lora_b"))
                         for k in added)
    assert saved.stat().st_size - path.stat().st_size < 2 * 2**20  # adapter weights only
    loaded = ClsrModel.load(saved, text)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["states"], batch["state_mask"])["speech_emb"],
                                   doc)


def test_retriever_embeds_spoken_questions_without_the_document_adapter(
        trained, text: TextEncoder, speech_dir: Path, tmp_path: Path) -> None:
    from speechrag.retrievers import load_retriever
    from speechrag.train.clsr_adapter import with_adapter

    adapted = with_adapter(ClsrModel.load(trained[2], text), rank=4)
    with torch.no_grad():
        for name, p in adapted.doc_encoder.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(std=0.05)
    adapted.save(tmp_path / "adapted.pt")
    with_it, without = load_retriever(str(tmp_path / "adapted.pt")), load_retriever(str(trained[2]))
    clip = [audio.load(speech_dir / f"{next(iter(TOPICS))}.wav")]
    torch.testing.assert_close(torch.from_numpy(with_it.encode_query_audio(clip)[0]),
                               torch.from_numpy(without.encode_query_audio(clip)[0]))
    with torch.inference_mode():
        states = with_it.speech.clips(clip)
        as_document = with_it.embed(*states)[0]
        as_question = with_it.embed(*states, document=False)[0]
    assert abs(as_document - as_question).max() > 1e-3
