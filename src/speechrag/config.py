"""Configuration checking shared by every config the project reads from a file or a
checkpoint: model configs, training configs, retriever specs.

A config is a frozen dataclass. Built from JSON through :func:`strict_config`, an
unknown key (a misspelled setting) or a value of the wrong type (``"lr": "fast"``) is
an error naming the config, before any audio is encoded.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def fits(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a field annotated ``int``, ``float``, ``bool``, ``str``
    (optionally ``| None``); other annotations (nested configs, tuples...) are checked by
    their own code, so they pass here."""
    parts = [p.strip() for p in annotation.split("|")]
    optional = "None" in parts
    parts = [p for p in parts if p != "None"]
    if len(parts) != 1 or parts[0] not in _SCALARS:
        return True
    if value is None:
        return optional
    want = _SCALARS[parts[0]]
    if want is bool or isinstance(value, bool):  # JSON true is not a number, 1 not a flag
        return want is bool and isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float))
    return isinstance(value, want)


def strict_config(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build the frozen dataclass ``cls`` from ``values`` (a config file, a checkpoint's
    saved config), refusing unknown keys and values of the wrong type, so a bad config
    fails at once rather than after the audio is encoded."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a JSON object, not {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    for name, value in values.items():
        annotation = known[name].type
        if isinstance(annotation, str) and not fits(value, annotation):
            raise ValueError(f"{where}: {name} must be {annotation}, not {value!r}")
    return cls(**values)


def overrides(config: Any) -> dict[str, Any]:
    """The fields of a config (a dataclass) whose values differ from its class's defaults,
    nested configs compared field by field: what an experiment's config file holds."""
    default = type(config)()
    out: dict[str, Any] = {}
    for f in fields(config):
        value, base = getattr(config, f.name), getattr(default, f.name)
        if hasattr(value, "__dataclass_fields__") and type(value) is type(base):
            nested = overrides(value)
            if nested:
                out[f.name] = nested
        elif value != base:
            out[f.name] = value
    return out
