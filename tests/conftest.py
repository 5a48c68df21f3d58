"""Shared fixtures: real TTS audio, the real tiny.en cascade, and a tiny WikiSpoken corpus,
all made by the tests themselves in temporary directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrag.audio import SAMPLE_RATE
from speechrag.corpus import tts

TOPICS = {
    "volcano": "A volcano is a rupture in the crust of a planet that allows hot lava, "
               "volcanic ash and gases to escape from a magma chamber below the surface.",
    "violin": "The violin is a wooden string instrument with four strings, usually played "
              "with a bow, and it is the smallest member of its family.",
    "bread": "Bread is a staple food prepared from a dough of flour and water, usually "
             "baked in an oven, and it has been made for thousands of years.",
}


def speak(text: str, path: Path, voice: str = "flite:kal") -> Path:
    """Real TTS speech (16 kHz mono wav) at ``path``."""
    tts.synthesize(text, tts.parse_voice(voice), path)
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    sf.write(str(path), samples, rate)
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short recordings, one topic each."""
    root = tmp_path_factory.mktemp("speech")
    for name, text in TOPICS.items():
        speak(text, root / f"{name}.wav")
    return root


@pytest.fixture(scope="session")
def tiny_retriever():
    from speechrag.retrievers import load_retriever

    return load_retriever("cascade-tiny")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory):
    """Four test-split passages in two long-form episodes, evaluation voices."""
    from speechrag.corpus.build import CorpusConfig, build_corpus

    root = tmp_path_factory.mktemp("corpus")
    return build_corpus(CorpusConfig(split="test", passages=4, per_episode=2), root)
