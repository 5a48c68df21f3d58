"""Answers by the SpeechLLM (`ask --context speech`, `--speech-llm`) over a real small
index (real TTS audio, Whisper tiny.en, LanceDB). The projector here is untrained (a
seeded SmolLM2-135M one; no projector ships yet), so what is under test is the path:
which speech goes into the prompt, in which order, what is left out, and that no
transcript is made where none should be."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import speechrag
from speechrag.audio import load_query_audio
from speechrag.cli import app, main
from speechrag.models.qformer import QFormerConfig
from speechrag.models.speechllm import SPEECH, SpeechLLM, SpeechLLMConfig
from speechrag.rag import Asker
from speechrag.segment import SegmenterConfig
from tests.conftest import TOPICS, speak

CONFIG = SpeechLLMConfig(llm="smollm2-135m", whisper="whisper-tiny.en",
                         qformer=QFormerConfig(input_dim=384, dim=64, heads=4, layers=1))


@pytest.fixture(scope="module")
def projector(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("projector") / "speechllm.pt"
    SpeechLLM(CONFIG).save(path)
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory, speech_dir: Path) -> Path:
    ix = tmp_path_factory.mktemp("speech-rag") / "ix"
    report = speechrag.index_audio([speech_dir], ix, model="cascade-tiny",
                                   segmenter=SegmenterConfig.of(10, 5))
    assert not report.failed
    return ix


def test_context_speech_gives_the_llm_each_hits_audio(index: Path, projector: Path):
    asker = Asker(index, context="speech", speech_llm=projector, max_tokens=8)
    stream = asker.stream("Which instrument has four strings?", k=3)
    user = stream.prompt.messages[1]["content"]
    assert user.count(SPEECH) == len(stream.prompt.hits) >= 1  # each passage heard
    assert user.endswith("Question: Which instrument has four strings?")
    for h in stream.prompt.hits:  # no transcript of a heard passage reaches the prompt
        assert (h.text or "").split()[0] not in user.split("Question:")[0]
    # its speech tokens: four a second of each passage's audio, and the text around them
    seconds = sum(h.end - h.start for h in stream.prompt.hits)
    assert stream.prompt.tokens > 3.5 * seconds
    answer = stream.text()
    assert answer.context == "speech" and answer.timings["first_token_ms"] > 0
    assert 0 < len(asker.speech.model.llm.ids(answer.text)) <= 8


def test_a_spoken_question_goes_in_as_speech_without_whisper(index: Path, projector: Path,
                                                             tmp_path: Path):

    wav = speak("What is baked from flour and water?", tmp_path / "q.wav")
    asker = Asker(index, speech_llm=str(projector), max_tokens=4)  # passages: stored text
    answer = asker.stream(audio=load_query_audio(wav), k=2)
    user = answer.prompt.messages[1]["content"]
    assert user.endswith(f"Question: {SPEECH}") and user.count(SPEECH) == 1
    assert asker._whisper is None  # no Whisper transcript of the question was made
    assert answer.text().text is not None


def test_what_does_not_fit_is_left_out_and_counted(index: Path, projector: Path,
                                                   monkeypatch):
    import speechrag.speech_answer as sa

    asker = Asker(index, context="speech", speech_llm=projector, max_tokens=8)
    full = asker.stream("Where does lava come from?", k=3).prompt
    monkeypatch.setattr(asker.speech, "n_ctx", full.tokens - 10 + 8)  # one passage less
    cut = asker.stream("Where does lava come from?", k=3).prompt
    assert cut.dropped >= 1 and len(cut.hits) == len(full.hits) - cut.dropped
    assert cut.tokens <= full.tokens - 10
    monkeypatch.setattr(asker.speech, "n_ctx", 20)
    with pytest.raises(ValueError, match="the question alone takes"):
        asker.stream("Where does lava come from?", k=3)
    assert sa.MAX_PROMPT_TOKENS >= 1024


def test_an_unreadable_recording_is_read_as_its_stored_text(tmp_path: Path, projector: Path):
    audio = tmp_path / "audio"
    audio.mkdir()
    speak(TOPICS["volcano"], audio / "volcano.wav")
    ix = tmp_path / "ix"
    speechrag.index_audio([audio], ix, model="cascade-tiny", segmenter=SegmenterConfig.of(10, 5))
    shutil.rmtree(audio)
    asker = Asker(ix, context="speech", speech_llm=projector, max_tokens=4)
    prompt = asker.stream("What escapes from a magma chamber?", k=1).prompt
    assert SPEECH not in prompt.messages[1]["content"]
    assert (prompt.hits[0].text or "").split()[0] in prompt.messages[1]["content"]


def test_no_shipped_projector_is_a_clear_error(index: Path):
    with pytest.raises(ValueError, match="ships none yet"):
        Asker(index, context="speech")
    with pytest.raises(ValueError, match="no SpeechLLM projector there"):
        Asker(index, speech_llm="/nowhere/model.pt")


def test_cli_answers_with_the_speech_llm_and_names_it(index: Path, projector: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["ask", "--index", str(index), "--query", "What is bread?",
                                 "--context", "speech", "--speech-llm", str(projector),
                                 "--max-tokens", "4", "--json", "--k", "2"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["query"] == "What is bread?" and len(line["hits"]) == 2
    assert "answering with smollm2-135m with the SpeechLLM projector speechllm.pt" in \
        result.stderr


def test_cli_speech_llm_without_a_path_means_the_shipped_one(index: Path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["ask", "--index", str(index), "--query", "What is bread?", "--speech-llm"])
    assert stop.value.code != 0
    assert "ships none yet" in capsys.readouterr().err


def test_python_api_takes_the_speech_llm(index: Path, projector: Path, tmp_path: Path):
    wav = speak("Which instrument is played with a bow?", tmp_path / "q.wav")
    answer = speechrag.ask(index, audio=wav, k=1, speech_llm=projector, context="speech")
    assert answer.context == "speech" and answer.hits and isinstance(answer.text, str)
