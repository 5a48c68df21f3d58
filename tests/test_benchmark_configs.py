"""Every experiment config in benchmarks/configs/<arch>/ loads with its trainer's config
and holds only what it changes from the defaults (which describe the shipped models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechrag.models.clsr import ClsrConfig
from speechrag.models.seal import SealConfig
from speechrag.train.clsr_adapter import AdapterTrainConfig
from speechrag.train.loop import TrainConfig

CONFIGS = Path(__file__).parent.parent / "benchmarks" / "configs"
FILES = sorted(CONFIGS.glob("*/*.json"))


def _no_defaults(values: dict, default: object, where: str) -> None:
    for key, value in values.items():
        base = getattr(default, key)
        if isinstance(value, dict) and hasattr(base, "__dataclass_fields__"):
            _no_defaults(value, base, f"{where}.{key}")
        else:
            assert value != base, f"{where}.{key} repeats its default {base!r}"


def test_the_folders_are_the_trainers() -> None:
    assert len(FILES) >= 40 and {p.parent.name for p in FILES} == {"clsr", "seal",
                                                                   "clsr-adapter"}
    assert not list(CONFIGS.glob("*.json"))  # grouped, none loose


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_loads_and_holds_only_overrides(path: Path) -> None:
    values = json.loads(path.read_text())
    arch = path.parent.name
    if arch == "clsr-adapter":
        AdapterTrainConfig.from_dict(values)
        _no_defaults(values, AdapterTrainConfig(), path.name)
        return
    model_cls = {"clsr": ClsrConfig, "seal": SealConfig}[arch]
    config = TrainConfig.from_dict(values, model_cls)
    model = values.pop("model", {})
    _no_defaults(values, TrainConfig(model=model_cls()), path.name)
    cif = model.pop("cif", None)
    _no_defaults(model, model_cls(), f"{path.name}: model")
    if cif:
        from speechrag.research.clsr_cif import CifConfig

        _no_defaults(cif, CifConfig(), f"{path.name}: model.cif")
    if arch == "clsr":  # a CIF model's settings are its own, and only CIF models have them
        assert (config.model.aligner == "cif") == (cif is not None)
