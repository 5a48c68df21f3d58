"""The CLSR document-adapter trainer on a tiny real corpus, on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechrag.models.clsr import ClsrConfig, ClsrModel
from speechrag.models.text_encoder import TextEncoder
from speechrag.train import clsr_adapter, main
from speechrag.train.clsr_adapter import AdapterTrainConfig

CONFIG = {"rank": 2, "steps": 4, "batch_size": 3, "warmup_steps": 1, "eval_every": 2,
          "val_fraction": 0.3, "crop": 0.5}


@pytest.fixture(scope="module")
def clsr_checkpoint(tmp_path_factory) -> Path:
    """A small CLSR on Whisper tiny.en (untrained: the adapter trainer only reads it)."""
    torch.manual_seed(0)
    config = ClsrConfig(whisper="whisper-tiny.en", d_encoder=384, d_model=32, encoder_layers=0,
                        ctc_conv_blocks=0, ctc_blocks=0)
    path = tmp_path_factory.mktemp("clsr") / "clsr.pt"
    ClsrModel(config, TextEncoder()).save(path, extra={"step": 0})
    return path


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "adapter.json"
    path.write_text(json.dumps(CONFIG))
    return path


def _run(corpus: Path, init: Path, config: Path, out: Path) -> Path:
    return main(["--arch", "clsr-adapter", "--init", str(init), "--corpus", str(corpus),
                 "--config", str(config), "--out", str(out), "--quiet"])


@pytest.fixture(scope="module")
def straight(train_corpus, clsr_checkpoint, config_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "run"
    assert _run(train_corpus, clsr_checkpoint, config_file, out) == out / "model.pt"
    return out


def test_adapter_run_logs_and_ships_the_checkpoint_plus_an_adapter(straight: Path,
                                                                   clsr_checkpoint: Path) -> None:
    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 0 and log[0]["config"]["rank"] == 2  # the model without it
    assert [r["step"] for r in log if "val_r1" in r] == [0, 2, 4]
    assert all(0 <= r["val_r1"] <= 100 for r in log if "val_r1" in r)
    assert log[0]["train_passages"] + log[0]["val_passages"] == 8
    assert (straight / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len(torch.load(straight / "tokens.pt", weights_only=True)) == 8  # decoded once

    init = torch.load(clsr_checkpoint, weights_only=True)["state"]
    shipped = torch.load(straight / "model.pt", weights_only=True)
    assert shipped["config"]["doc_adapter_rank"] == 2 and shipped["step"] == 4
    added = set(shipped["state"]) - set(init)
    assert added and all(k.startswith("doc_encoder.") for k in added)
    for k, v in init.items():  # everything below the adapter is the checkpoint's own
        assert torch.equal(shipped["state"][k], v), k
    assert any(shipped["state"][k].abs().sum() > 0 for k in added if k.endswith("lora_b"))
    model = ClsrModel.load(straight / "model.pt")
    assert model.doc_encoder is not None


def test_adapter_run_resumes_to_the_same_weights(train_corpus, clsr_checkpoint, config_file,
                                                 straight: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(straight / "features", broken / "features")
    real = clsr_adapter.info_nce
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the session ended after the step-2 checkpoint
        return real(*args, **kwargs)

    monkeypatch.setattr(clsr_adapter, "info_nce", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(train_corpus, clsr_checkpoint, config_file, broken)
    assert torch.load(broken / "last.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(clsr_adapter, "info_nce", real)
    _run(train_corpus, clsr_checkpoint, config_file, broken)
    a = torch.load(straight / "model.pt", weights_only=True)["state"]
    b = torch.load(broken / "model.pt", weights_only=True)["state"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


@pytest.mark.parametrize("bad", [{"crop": 0}, {"batch_size": 1}, {"rank": 0}, {"ranks": 2},
                                 {"sample_temperature": -1}])
def test_bad_adapter_configs_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        AdapterTrainConfig.from_dict(bad)


def test_a_lattice_at_temperature_zero_is_the_greedy_ctc_decoding() -> None:
    from speechrag.models.ctc import greedy_tokens
    from speechrag.train.clsr_adapter import Lattice

    torch.manual_seed(0)
    frames = torch.randn(1, 60, 7)
    frames[0, ::3, 0] += 3  # blanks between some tokens, runs elsewhere
    first, n = greedy_tokens(frames, torch.ones(1, 60, dtype=torch.bool), 1000)
    greedy = frames[0, first[0, : int(n[0])], 1:].argmax(-1)
    lattice = Lattice.of(frames[0], ctc=True)
    assert lattice.classes.shape == (60, 4) and lattice.logp.dtype == torch.float16
    assert torch.equal(lattice.sample(0.0), greedy)
    assert torch.equal(lattice.sample(0.0, limit=3), greedy[:3])


def test_sampled_paths_vary_stay_in_the_kept_classes_and_follow_the_temperature() -> None:
    from speechrag.train.clsr_adapter import LATTICE_K, Lattice

    torch.manual_seed(1)
    logits = torch.randn(200, 12) * 2
    lattice = Lattice.of(logits, ctc=False)  # CIF: one class per token, no merging
    kept = logits.topk(LATTICE_K, dim=-1).indices
    greedy = lattice.sample(0.0)
    assert torch.equal(greedy, logits.argmax(-1))
    gen = torch.Generator().manual_seed(0)
    cool, hot = lattice.sample(0.1, gen), lattice.sample(3.0, gen)
    assert len(cool) == len(hot) == 200  # CIF tokens: never merged or dropped
    assert ((hot[:, None] == kept).any(1)).all()
    assert (cool != greedy).sum() < (hot != greedy).sum()
    again = lattice.sample(3.0, torch.Generator().manual_seed(0))
    assert torch.equal(lattice.sample(3.0, torch.Generator().manual_seed(0)), again)


def test_adapter_run_on_sampled_transcripts(train_corpus, clsr_checkpoint, straight: Path,
                                            tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "sampled"
    shutil.copytree(straight / "features", out / "features")
    config = tmp_path / "sampled.json"
    config.write_text(json.dumps({**CONFIG, "sample_temperature": 1.5}))
    _run(train_corpus, clsr_checkpoint, config, out)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["config"]["sample_temperature"] == 1.5
    assert 0 < log[0]["sampled_vs_greedy_ter"] <= 200  # an untrained model is unsure
    assert len(torch.load(out / "lattice.pt", weights_only=True)) == 8
    a = torch.load(straight / "model.pt", weights_only=True)["state"]
    b = torch.load(out / "model.pt", weights_only=True)["state"]
    lora = [k for k in a if k.endswith("lora_b")]
    assert any(not torch.equal(a[k], b[k]) for k in lora)  # it trained on other inputs
