"""`speechrag train --arch speechllm` end to end on a real tiny train corpus, the real
SmolLM2-135M and Whisper tiny.en: stage 1, stage 2 from it, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechrag.models.speechllm import SpeechLLM
from speechrag.train import main as train_main
from speechrag.train.speechllm import SpeechLLMTrainConfig

MODEL = {"llm": "smollm2-135m", "whisper": "whisper-tiny.en",
         "qformer": {"input_dim": 384, "dim": 64, "heads": 4, "layers": 1}}


def _config(tmp_path: Path, name: str, **kw) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"model": MODEL, "batch_size": 2, "eval_every": 2,
                                "warmup_steps": 1, "lr": 1e-3, "val_fraction": 0.25,
                                "max_val": 2, **kw}))
    return path


def test_pretrain_then_finetune_then_resume(train_corpus: Path, tmp_path: Path):
    features = tmp_path / "features"
    pre = train_main(["--arch", "speechllm", "--corpus", str(train_corpus), "--quiet",
                      "--config", str(_config(tmp_path, "pre", steps=2, layers=[0, 3])),
                      "--out", str(tmp_path / "pre"), "--features", str(features)])
    log = [json.loads(x) for x in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 and 0 <= log[-1]["val_align_r1"] <= 1
    assert (tmp_path / "pre" / "curves.png").stat().st_size > 0
    payload = torch.load(pre, weights_only=True)
    assert payload["run"] == "contr-cos-all" and payload["arch"] == "speechllm"

    ft_config = _config(tmp_path, "ft", stage="finetune", steps=2, data_fraction=0.5)
    out = tmp_path / "ft"
    args = ["--arch", "speechllm", "--corpus", str(train_corpus), "--quiet", "--config",
            str(ft_config), "--out", str(out), "--features", str(features), "--init", str(pre)]
    train_main(args)
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["init"] == str(pre)
    assert "val_answer_acc" in log[-1] and log[-1]["val_ce"] > 0
    # spoken questions and sentence pieces, in training voices, kept beside the states
    assert any(features.joinpath("tts", "questions").glob("*.wav"))
    assert len(list(features.joinpath("tts", "pieces").glob("*.wav"))) > 8
    model = SpeechLLM.load(out / "model.pt")
    assert model.config.llm == "smollm2-135m"

    # another config in the same run directory is refused, not mixed in
    ft_config.write_text(json.dumps(json.loads(ft_config.read_text()) | {"steps": 4}))
    with pytest.raises(ValueError, match="another config"):
        train_main(args)


def test_an_interrupted_run_resumes_where_it_stopped(train_corpus: Path, tmp_path: Path,
                                                     monkeypatch):
    """Killed after its step-2 checkpoint, a run resumes there and ends with the weights
    of a run that was never interrupted."""
    import speechrag.train.speechllm as trainer

    config = _config(tmp_path, "c", steps=4, similarity="wasserstein")
    features = tmp_path / "features"

    def run(out: str) -> Path:
        return train_main(["--arch", "speechllm", "--corpus", str(train_corpus), "--quiet",
                           "--config", str(config), "--out", str(tmp_path / out),
                           "--features", str(features)])

    whole = torch.load(run("whole"), weights_only=True)["state"]
    real_validate, calls = trainer.validate, []

    def dies_at_step_4(*a, **kw):  # the step-2 checkpoint is written, then the kill
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_validate(*a, **kw)

    monkeypatch.setattr(trainer, "validate", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run("cut")
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(trainer, "validate", real_validate)
    resumed = torch.load(run("cut"), weights_only=True)["state"]
    for key, value in whole.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6)


def test_asr_pretraining_is_validated_by_its_loss(train_corpus: Path, tmp_path: Path):
    train_main(["--arch", "speechllm", "--corpus", str(train_corpus), "--quiet", "--config",
                str(_config(tmp_path, "asr", objective="asr", steps=1)),
                "--out", str(tmp_path / "asr"), "--features", str(tmp_path / "features")])
    log = [json.loads(x) for x in (tmp_path / "asr" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["val_ce"] > 0 and "val_answer_acc" not in log[-1]


def test_bad_train_config_is_refused():
    with pytest.raises(ValueError, match="stage must be one of"):
        SpeechLLMTrainConfig(stage="both")
    with pytest.raises(ValueError, match="tasks must be"):
        SpeechLLMTrainConfig(tasks=("translate",))
    with pytest.raises(ValueError, match="unknown key"):
        SpeechLLMTrainConfig.from_dict({"epochs": 3})
    assert SpeechLLMTrainConfig(similarity="wasserstein", layers=(0,)).name == \
        "contr-wasser-emb"
    assert SpeechLLMTrainConfig(objective="asr").name == "asr-pretrain"
    assert SpeechLLMTrainConfig(stage="finetune", data_fraction=0.1).name == "finetune-10%"


def test_finetune_examples_are_laid_out_as_ask_prompts_them(train_corpus: Path,
                                                            tmp_path: Path):
    from speechrag.corpus.build import load_corpus
    from speechrag.models.speechllm import SPEECH
    from speechrag.train.data import training_utterances
    from speechrag.train.speechllm import finetune_examples

    passages = training_utterances(load_corpus(train_corpus))[:3]
    examples = finetune_examples(passages, tmp_path / "q", ("spoken_qa", "spoken_question"),
                                 distractors=1)
    qa = [e for e in examples if e.task == "spoken_qa"]
    asked = [e for e in examples if e.task == "spoken_question"]
    assert qa and len(asked) == len(qa)
    for e in qa:  # two recordings, one of them the passage that answers, cited by number
        assert len(e.speech) == 2 and e.user.count(SPEECH) == 2
        n = [u.passage_id for u in e.speech].index(e.passage_id) + 1
        assert e.answer == f"{e.gold} [{n}]" and "Question: " in e.user
        assert e.gold not in e.user.split("Question:")[0]  # passages are only speech
    for e in asked:  # the passages written, the question one spoken recording
        assert len(e.speech) == 1 and e.speech[0].kind == "query"
        assert e.user.count(SPEECH) == 1 and e.user.endswith(f"Question: {SPEECH}")
        assert e.speech[0].voice == next(u.voice for u in passages
                                         if u.passage_id == e.passage_id)
    again = finetune_examples(passages, tmp_path / "q", ("spoken_qa",), distractors=1)
    assert again == qa  # seeded
