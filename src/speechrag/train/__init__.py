"""The training app, kept beside the library: ``main(argv)`` picks the architecture.

Nothing in the library imports this package; a trained checkpoint is what it leaves.
"""

from __future__ import annotations

from pathlib import Path

ARCHS = ("clsr", "seal", "clsr-adapter", "speechllm")


def main(argv: list[str]) -> Path:
    """``--arch NAME`` followed by that trainer's own arguments."""
    if len(argv) < 2 or argv[0] != "--arch":
        raise ValueError(f"usage: speechrag train --arch {{{','.join(ARCHS)}}} ...")
    arch, rest = argv[1], argv[2:]
    if arch == "clsr":
        from speechrag.train.clsr import main as train_clsr

        return train_clsr(rest)
    if arch == "clsr-adapter":
        from speechrag.train.clsr_adapter import main as train_adapter

        return train_adapter(rest)
    if arch == "seal":
        from speechrag.train.seal import main as train_seal

        return train_seal(rest)
    if arch == "speechllm":
        from speechrag.train.speechllm import main as train_speechllm

        return train_speechllm(rest)
    raise ValueError(f"unknown --arch {arch!r}; available: {', '.join(ARCHS)}")
