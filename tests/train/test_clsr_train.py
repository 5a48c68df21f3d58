"""The CLSR training app on a tiny real corpus, on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechrag.models.clsr import ClsrConfig
from speechrag.train import clsr as trainer
from speechrag.train import main
from speechrag.train.loop import TrainConfig

DECODER = {"d_model": 32, "n_layer": 1, "n_head": 2, "d_ff": 64, "dropout": 0.0}
# the paper's CLSR (CIF + NAR decoder) at test size; the shipped CTC model's run is below
CONFIG = {
    "model": {"whisper": "whisper-tiny.en", "d_encoder": 384, "d_model": 32, "aligner": "cif",
              "state_stride": 3, "state_pooling": "mean", "time_encoding": True,
              "ctc_blocks": 0, "ctc_conv_blocks": 0, "vocab_min_count": 2, "rare_tokens": "unk",
              "encoder_layers": 0, "cif": {"decoder": DECODER}},
    "stage1_steps": 6, "stage2_steps": 4, "batch_size": 3, "warmup_steps": 2,
    "eval_every": 5, "val_fraction": 0.3, "lr": 3e-3,
}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "train.json"
    path.write_text(json.dumps(CONFIG))
    return path


@pytest.fixture(scope="module")
def straight(train_corpus, config_file, tmp_path_factory) -> tuple[Path, Path]:
    """One uninterrupted run: (out dir, returned model path)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    model = main(["--arch", "clsr", "--corpus", str(train_corpus), "--config", str(config_file),
                  "--out", str(out), "--quiet"])
    return out, model


def test_trains_logs_and_ships_a_small_model(straight) -> None:
    out, model = straight
    assert model == out / "model.pt" and model.is_file()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_wer" in r]
    assert [r["step"] for r in evals] == [5, 10]
    assert evals[0]["stage"] == 1 and evals[0]["nll"] == 0
    assert evals[1]["stage"] == 2 and evals[1]["nll"] > 0
    assert 0 <= evals[1]["val_r1"] <= 1 and evals[1]["val_n"] >= 1
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((out / "features").glob("*/*.pt"))) == 8
    assert model.stat().st_size < (out / "last.pt").stat().st_size  # no optimizer in it


def test_resume_gives_the_same_weights(train_corpus, config_file, tmp_path, straight,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(straight[0] / "features", broken / "features")  # same cached states
    real_batch = trainer.Batches.batch

    def interrupted(self, step: int):
        if step == 7:
            raise KeyboardInterrupt  # as if the session ended after the step-5 checkpoint
        return real_batch(self, step)

    monkeypatch.setattr(trainer.Batches, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["--arch", "clsr", "--corpus", str(train_corpus), "--config", str(config_file),
              "--out", str(broken), "--quiet"])
    assert torch.load(broken / "last.pt", weights_only=True)["step"] == 5
    # as if the first session had trained for an hour before it ended
    first = [json.loads(line) for line in (broken / "log.jsonl").read_text().splitlines()]
    first[-1]["seconds"] = 3600.0
    (broken / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))
    monkeypatch.setattr(trainer.Batches, "batch", real_batch)
    main(["--arch", "clsr", "--corpus", str(train_corpus), "--config", str(config_file),
          "--out", str(broken), "--quiet"])
    a = torch.load(straight[1], weights_only=True)["state"]
    b = torch.load(broken / "model.pt", weights_only=True)["state"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    # the log's clock runs on across the resume instead of restarting at zero
    log = [json.loads(line) for line in (broken / "log.jsonl").read_text().splitlines()]
    after = [r["seconds"] for r in log if r["step"] > 5 and "seconds" in r]
    assert after and all(3600.0 < t < 3600.0 + 600 for t in after)
    assert after == sorted(after)


def test_init_from_a_run_with_the_levers_and_without_vq(train_corpus, straight,
                                                       tmp_path) -> None:
    """A stage-1 checkpoint seeds a run that adds the glancing sampler and a CTC head
    (fresh weights) and drops VQ (the ablation); the log names the changes and the
    saved model carries them."""
    from speechrag.models.clsr import ClsrModel

    levers = {"cif": {"decoder": DECODER, "glancing_ratio": 0.75, "ctc_weight": 0.3},
              "vq": False}
    config = tmp_path / "levers.json"
    config.write_text(json.dumps({**CONFIG, "model": {**CONFIG["model"], **levers},
                                  "stage1_steps": 2, "stage2_steps": 2, "eval_every": 2}))
    out = tmp_path / "levers"
    model = main(["--arch", "clsr", "--corpus", str(train_corpus), "--config", str(config),
                  "--out", str(out), "--init", str(straight[1]), "--quiet"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["init_changes"] == {"cif.glancing_ratio": [0.0, 0.75],
                                      "cif.ctc_weight": [0.0, 0.3], "vq": [True, False]}
    stage1 = [r for r in log if r.get("stage") == 1]
    assert stage1 and all(r["ctc"] > 0 and 0 <= r["glanced"] <= 0.75 for r in stage1)
    loaded = ClsrModel.load(model)
    assert not loaded.config.vq and loaded.ctc_blank is not None
    assert loaded.glance_proj is not None


def test_refuses_evaluation_data_and_bad_configs(tmp_path, config_file, tiny_corpus) -> None:
    with pytest.raises(ValueError, match="train-split corpora only"):
        main(["--arch", "clsr", "--corpus", str(tiny_corpus.root), "--config", str(config_file),
              "--out", str(tmp_path / "x"), "--quiet"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": 5}')
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict(json.loads(bad.read_text()), ClsrConfig)
    with pytest.raises(ValueError, match="unknown --arch"):
        main(["--arch", "wav2vec"])
    # refused before any corpus is read or audio encoded, each naming what is wrong
    for text, why in (('{"lr": "fast"}', 'lr must be float, not .fast.'),
                      ('{"batch_size": -4}', "batch_size must be >= 2"),
                      ('{"stage1_steps": 0, "stage2_steps": 0}', "at least 1"),
                      ('{"model": {"vq": "yes"}}', "vq must be bool"),
                      ('{"stage1_steps": 2.5}', "stage1_steps must be int"),
                      ('{"lr": 1e-3,}', f"{bad}: train config is not valid JSON"),
                      ('[1, 2]', "is a JSON object")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=why):
            main(["--arch", "clsr", "--corpus", str(tiny_corpus.root), "--config", str(bad),
                  "--out", str(tmp_path / "x"), "--quiet"])


def test_the_shipped_architecture_trains_by_default(train_corpus, tmp_path) -> None:
    """With no aligner named, a run trains the shipped CTC model (at test size), and
    its checkpoint loads as that, not as the research variant."""
    from speechrag.models.clsr import ClsrModel

    config = tmp_path / "ctc.json"
    config.write_text(json.dumps({**{k: v for k, v in CONFIG.items() if k != "model"},
                                  "model": {"whisper": "whisper-tiny.en", "d_encoder": 384,
                                            "d_model": 32, "encoder_layers": 0,
                                            "ctc_conv_blocks": 0}}))
    model = main(["--arch", "clsr", "--corpus", str(train_corpus), "--config", str(config),
                  "--out", str(tmp_path / "ctc"), "--quiet"])
    log = [json.loads(line) for line in (tmp_path / "ctc" / "log.jsonl").read_text().splitlines()]
    assert all(r["ctc"] > 0 for r in log if "ctc" in r) and "val_wer" in log[-1]
    loaded = ClsrModel.load(model)
    assert type(loaded) is ClsrModel and loaded.config.aligner == "ctc"
