"""A tiny real train-split corpus (8 passages, two training voices) for the trainers,
and a copy with its queries spoken (training voices)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from speechrag.corpus.build import CorpusConfig, build_corpus, speak_queries


@pytest.fixture(scope="package")
def train_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-corpus")
    build_corpus(CorpusConfig(split="train", passages=8, layout="passages",
                              voices=("flite:kal", "espeak-ng")), root)
    return root


@pytest.fixture(scope="package")
def spoken_corpus(train_corpus: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("spoken") / "corpus"
    shutil.copytree(train_corpus, root)
    speak_queries(root)  # a train corpus: its training voices
    return root


@pytest.fixture(scope="package")
def second_rendition(tmp_path_factory) -> Path:
    """The same 8 train passages (same seed) spoken again in other training voices: the
    same file names as ``train_corpus``, other audio."""
    root = tmp_path_factory.mktemp("rendition-1")
    build_corpus(CorpusConfig(split="train", passages=8, layout="passages",
                              voices=("flite:awb", "flite:rms")), root)
    return root
