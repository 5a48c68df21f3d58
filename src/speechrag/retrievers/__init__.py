"""The retrievers: every system behind one interface, built by kind from one registry.

    cascade    ASR (faster-whisper) -> text encoder            retrievers/cascade.py
    clsr       Whisper encoder -> CTC tokens -> text encoder   retrievers/clsr.py
    seal       Whisper encoder -> adaptor -> shared space      retrievers/seal.py
    fusion     CLSR and SEAL on one Whisper pass               retrievers/fused.py
    gold-text  the clean-text upper bound (evaluator only)     retrievers/gold_text.py
"""

from __future__ import annotations

from speechrag.retrievers.registry import (
    DEFAULT_MODEL,
    PRESETS_DIR,
    REGISTRY,
    TRAINED_DIR,
    Retriever,
    canonical_spec,
    from_spec,
    load_retriever,
    preset_names,
    resolve_spec,
    spec_of,
)

__all__ = ["DEFAULT_MODEL", "PRESETS_DIR", "REGISTRY", "TRAINED_DIR", "Retriever",
           "canonical_spec", "from_spec", "load_retriever", "preset_names", "resolve_spec",
           "spec_of"]
