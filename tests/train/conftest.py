"""A tiny real train-split corpus (8 passages, two training voices) for the trainers."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechrag.corpus.build import CorpusConfig, build_corpus


@pytest.fixture(scope="package")
def train_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-corpus")
    build_corpus(CorpusConfig(split="train", passages=8, layout="passages",
                              voices=("flite:kal", "espeak-ng")), root)
    return root
