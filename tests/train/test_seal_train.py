"""The SEAL training app on a tiny real corpus, on CPU, sharing CLSR's cached states."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechrag import audio
from speechrag.models.seal import SealConfig, SealModel
from speechrag.train import main
from speechrag.train.loop import TrainConfig

from ..conftest import TOPICS

CONFIG = {
    "model": {"whisper": "whisper-tiny.en", "d_encoder": 384, "d_hidden": 64,
              "alignment": {"similarity": "wasserstein", "layers": [[0, 3], [1, 6]],
                            "iters": 5}},
    "stage1_steps": 4, "stage2_steps": 4, "batch_size": 3, "warmup_steps": 2,
    "eval_every": 4, "val_fraction": 0.3, "lr": 3e-3,
}


def test_trains_both_stages_and_ships(train_corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "seal.json"
    config.write_text(json.dumps(CONFIG))
    features = tmp_path / "features"
    out = tmp_path / "run"
    model = main(["--arch", "seal", "--corpus", str(train_corpus), "--config", str(config),
                  "--out", str(out), "--features", str(features), "--quiet"])
    assert len(list(features.glob("*/*.pt"))) == 8 and not (out / "features").exists()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_r1" in r]
    assert [r["step"] for r in evals] == [4, 8]
    assert evals[0]["nll"] == 0 and evals[0]["align"] > 0
    assert evals[1]["nll"] > 0 and 0 <= evals[1]["val_align_r1"] <= 1
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    loaded = SealModel.load(model)
    assert loaded.config.alignment.similarity == "wasserstein"
    assert loaded.config.alignment.layers == ((0, 3), (1, 6))
    with pytest.raises(ValueError, match="another config"):  # same --out, other settings
        config.write_text(json.dumps({**CONFIG, "lr": 1e-3}))
        main(["--arch", "seal", "--corpus", str(train_corpus), "--config", str(config),
              "--out", str(out), "--features", str(features), "--quiet"])
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"model": {"adaptor": 3}}, SealConfig)

    # stage 2 alone, initialized from the first run's weights
    stage2 = tmp_path / "stage2.json"
    stage2.write_text(json.dumps({**CONFIG, "stage1_steps": 0, "stage2_steps": 2,
                                  "eval_every": 2}))
    out2 = tmp_path / "run2"
    main(["--arch", "seal", "--corpus", str(train_corpus), "--config", str(stage2),
          "--out", str(out2), "--features", str(features), "--init", str(model), "--quiet"])
    log2 = [json.loads(line) for line in (out2 / "log.jsonl").read_text().splitlines()]
    assert log2[0]["init"] == str(model) and log2[0]["init_step"] == 8
    assert log2[-1]["step"] == 2 and log2[-1]["stage"] == 2 and log2[-1]["nll"] > 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**CONFIG, "model": {**CONFIG["model"], "d_hidden": 32}}))
    with pytest.raises(ValueError, match="weights do not fit this run's model config"):
        main(["--arch", "seal", "--corpus", str(train_corpus), "--config", str(other),
              "--out", str(tmp_path / "run3"), "--features", str(features), "--init",
              str(model), "--quiet"])
    # an option that leaves every weight in place may change; the log says what did
    other.write_text(json.dumps({**json.loads(stage2.read_text()),
                                 "model": {**CONFIG["model"], "nce_temperature": 0.1}}))
    main(["--arch", "seal", "--corpus", str(train_corpus), "--config", str(other),
          "--out", str(tmp_path / "run4"), "--features", str(features), "--init", str(model),
          "--quiet"])
    log4 = [json.loads(line) for line in (tmp_path / "run4/log.jsonl").read_text().splitlines()]
    assert log4[0]["init_changes"] == {"nce_temperature": [0.05, 0.1]}
    assert SealModel.load(tmp_path / "run4/model.pt").config.nce_temperature == 0.1


def test_spoken_queries_are_trained_and_validated(spoken_corpus: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "seal.json"
    config.write_text(json.dumps({**CONFIG, "stage1_steps": 2, "stage2_steps": 2,
                                  "eval_every": 2, "batch_size": 4, "val_fraction": 0.4,
                                  "model": {**CONFIG["model"], "alignment": {}}}))
    out = tmp_path / "run"
    main(["--arch", "seal", "--corpus", str(spoken_corpus), "--config", str(config),
          "--out", str(out)])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_r1" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0 <= r["val_spoken_r1"] <= 1 and r["val_spoken_n"] > r["val_n"] for r in evals)
    assert evals[1]["nll"] > 0
    # best.pt is the validation with the best mean of written and spoken query R@1
    scores = [(r["val_r1"] + r["val_spoken_r1"]) / 2 for r in evals]
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["step"] == evals[scores.index(max(scores))]["step"]
    assert best["score"] == pytest.approx(max(scores))
    err = capsys.readouterr().err  # the progress bar and the validation lines
    assert "training" in err and "4/4" in err and "step 4/4" in err


def test_top_encoder_blocks_train_from_whisper(train_corpus: Path, tmp_path: Path,
                                               speech_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``encoder_layers`` = 1 on top of a frozen-encoder checkpoint: Whisper's last block
    starts from its own weights (the model embeds audio as the checkpoint did), then
    trains at ``encoder_lr_scale`` x the rate, ships in the checkpoint and runs at search
    time on states cached below it."""
    from speechrag.models.whisper_encoder import WhisperEncoder
    from speechrag.retrievers.seal import SealRetriever
    from speechrag.retrievers.trained import CheckpointSpec, file_sha256

    monkeypatch.setenv("SPEECHRAG_ENCODER_DTYPE", "float32")  # compare at fp32 precision
    model_cfg = {**CONFIG["model"], "alignment": {}}
    features = tmp_path / "features"

    def train(name: str, init: Path | None = None, **values) -> Path:
        config = tmp_path / f"{name}.json"
        config.write_text(json.dumps({**CONFIG, "model": model_cfg, "stage1_steps": 0,
                                      "stage2_steps": 2, "eval_every": 2, **values}))
        return main(["--arch", "seal", "--corpus", str(train_corpus), "--config", str(config),
                     "--out", str(tmp_path / name), "--features", str(features), "--quiet",
                     *(["--init", str(init)] if init else [])])

    frozen = train("frozen")
    top_cfg = {**model_cfg, "encoder_layers": 1}
    start = train("start", frozen, model=top_cfg, lr=0.0)  # a step that changes nothing
    trained = train("trained", frozen, model=top_cfg, encoder_lr_scale=0.5)
    held = train("held", trained, model=top_cfg, encoder_lr_scale=0.0)  # top blocks frozen
    assert {p.name for p in features.iterdir()} == {"whisper-tiny.en-piece20s-fp32",
                                                     "whisper-tiny.en-piece20s-fp32-skip-top1"}
    log = [json.loads(line) for line in (tmp_path / "trained/log.jsonl").read_text()
           .splitlines()]
    assert log[0]["init_changes"] == {"encoder_layers": [0, 1]}
    groups = torch.load(tmp_path / "trained/last.pt", weights_only=True)["optimizer"][
        "param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 0.5]
    assert groups[1]["lr"] == pytest.approx(0.5 * groups[0]["lr"]) and groups[1]["lr"] > 0

    whisper_last = WhisperEncoder.load("whisper-tiny.en").blocks[3].qkv.weight
    state = SealModel.load(trained).trained_state_dict()
    assert "encoder_top.blocks.0.qkv.weight" in state
    assert not torch.allclose(state["encoder_top.blocks.0.qkv.weight"], whisper_last)
    assert torch.equal(SealModel.load(start).encoder_top.blocks[0].qkv.weight, whisper_last)
    kept = SealModel.load(held).trained_state_dict()
    assert all(torch.equal(kept[k], v) for k, v in state.items() if k.startswith("encoder_top"))
    assert not all(torch.equal(kept[k], v) for k, v in state.items())  # the head moved
    assert len(torch.load(tmp_path / "held/last.pt", weights_only=True)["optimizer"][
        "param_groups"]) == 1

    clips = [audio.load(speech_dir / f"{k}.wav") for k in TOPICS]

    def embed(path: Path) -> np.ndarray:
        return SealRetriever(CheckpointSpec(str(path), file_sha256(path))
                             ).encode_query_audio(clips)[0]

    before, at_start, after = embed(frozen), embed(start), embed(trained)
    np.testing.assert_allclose(at_start, before, atol=1e-4)
    assert np.abs(after - before).max() > 1e-3


def test_trains_on_two_renditions(train_corpus: Path, second_rendition: Path,
                                  tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--corpus twice: both renditions are cached and trained on; validation is the first
    corpus's held-out passages, as in a run on it alone."""
    config = tmp_path / "seal.json"
    config.write_text(json.dumps({**CONFIG, "stage1_steps": 2, "stage2_steps": 2,
                                  "eval_every": 2}))
    features, out = tmp_path / "features", tmp_path / "run"
    main(["--arch", "seal", "--corpus", str(train_corpus), "--corpus", str(second_rendition),
          "--config", str(config), "--out", str(out), "--features", str(features)])
    said = capsys.readouterr()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    n_val = log[-1]["val_n"]
    # the second rendition of a held-out passage is neither trained on nor encoded
    assert len(list(features.glob("*/*.pt"))) == 16 - n_val
    alone = tmp_path / "alone"
    main(["--arch", "seal", "--corpus", str(train_corpus), "--config", str(config),
          "--out", str(alone), "--features", str(features), "--quiet"])
    log_alone = [json.loads(line) for line in (alone / "log.jsonl").read_text().splitlines()]
    assert [r["val_n"] for r in log if "val_n" in r] == [r["val_n"] for r in log_alone
                                                         if "val_n" in r]
    assert f"{16 - 2 * n_val} training and {n_val} validation utterances" in said.out + said.err
