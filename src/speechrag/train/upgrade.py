"""Convert a checkpoint of format 1 (speechrag before 2026-12-07) to the current one.

    python -m speechrag.train.upgrade OLD.pt [NEW.pt]     (NEW defaults to OLD, replaced)

Format 1 had no ``arch`` on CLSR files, named the text encoder's digest by model
(``word_embeddings_sha256`` / ``text_encoder_sha256``), and kept the CIF variant's
settings at the top of ``ClsrConfig``, whose defaults were the paper's CIF model. The
upgrade fills a format-1 CLSR config from those old defaults, moves the CIF settings
under ``cif`` (aligner "cif" only), records the pretrained parts' digests, and loads
the result to check that it reads back. The weights are not touched.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from speechrag.models.trained import CHECKPOINT_FORMAT, file_sha256, whisper_digest

# ClsrConfig's defaults in format 1: a field a format-1 file lacks had this value
FORMAT1_CLSR_DEFAULTS: dict[str, Any] = {
    "whisper": "whisper-base", "text_encoder": "all-MiniLM-L6-v2", "d_encoder": 512,
    "state_stride": 3, "state_pooling": "mean",
    "decoder": {"d_model": 256, "n_layer": 3, "n_head": 4, "d_ff": 1024, "dropout": 0.1,
                "max_tokens": 512, "init": ""},
    "cif_bias_init": -2.5, "tail_threshold": 0.5, "time_encoding": True,
    "cif_ce_weight": 0.5, "glancing_ratio": 0.0, "ctc_weight": 0.0, "aligner": "cif",
    "ctc_blocks": 0, "ctc_conv_blocks": 0, "ctc_conv_kernel": 9, "vocab_min_count": 2,
    "rare_tokens": "unk", "vq": True,
    "alignment": {"similarity": "cosine", "layers": ((-1, -1),), "temperature": 0.1,
                  "blur": 0.5, "iters": 30, "normalize": True},
    "align_weight": 0.0, "vq_temperature": 0.1, "loss_a": 1 / 3, "loss_b": 1 / 3,
    "nce_temperature": 0.05, "encoder_layers": 0, "doc_adapter_rank": 0,
}
CIF_FIELDS = ("cif_bias_init", "tail_threshold", "cif_ce_weight", "glancing_ratio",
              "ctc_weight", "alignment", "align_weight", "loss_a")


def upgrade_clsr_config(old: dict[str, Any]) -> dict[str, Any]:
    """A format-1 CLSR config (complete, or an experiment's overrides of the format-1
    defaults) -> the complete current config dict, as ``ClsrConfig.from_dict`` takes."""
    unknown = sorted(set(old) - set(FORMAT1_CLSR_DEFAULTS))
    if unknown:
        raise ValueError(f"format-1 CLSR config: unknown key(s) {unknown}")
    full = {**FORMAT1_CLSR_DEFAULTS, **old}
    full["decoder"] = {**FORMAT1_CLSR_DEFAULTS["decoder"], **old.get("decoder", {})}
    full["alignment"] = {**FORMAT1_CLSR_DEFAULTS["alignment"], **old.get("alignment", {})}
    decoder = full.pop("decoder")
    cif = {name: full.pop(name) for name in CIF_FIELDS}
    new = {**full, "d_model": decoder["d_model"]}
    new["cif"] = {"decoder": decoder, **cif} if full["aligner"] == "cif" else None
    return new


def upgrade_payload(payload: dict[str, Any], old_sha256: str = "") -> dict[str, Any]:
    """A format-1 checkpoint dict -> the current format (weights untouched).
    ``old_sha256``, the format-1 file's checksum, is kept under ``replaces_sha256``: an
    index built with the old file still opens with the new one (same weights)."""
    if payload.get("format") == CHECKPOINT_FORMAT and "arch" in payload:
        return payload
    if payload.get("format") != 1:
        raise ValueError(f"checkpoint format {payload.get('format')}: only format 1 "
                         "converts")
    out = dict(payload)
    arch = out.setdefault("arch", "clsr")  # format 1's first CLSR files had no tag
    digest = out.pop("word_embeddings_sha256", None) or out.pop("text_encoder_sha256", None)
    config = out["config"]
    if arch == "clsr":
        config = upgrade_clsr_config(config)
    if old_sha256:
        out["replaces_sha256"] = [*out.get("replaces_sha256", []), old_sha256]
    out.update(format=CHECKPOINT_FORMAT, config=config,
               pretrained={"text_encoder": digest or "",
                           "whisper": whisper_digest(config["whisper"])})
    return out


def upgrade(src: Path, dst: Path) -> Path:
    """Convert ``src`` into ``dst`` (atomically) and check that it loads."""
    from speechrag.models.clsr import ClsrModel
    from speechrag.models.seal import SealModel

    try:
        payload = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{src}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(payload, dict) or "config" not in payload or "state" not in payload:
        raise ValueError(f"{src}: not a speechrag checkpoint")
    new = upgrade_payload(payload, file_sha256(src))
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    torch.save(new, tmp)
    try:
        {"clsr": ClsrModel, "seal": SealModel}[new["arch"]].load(tmp)
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    src = Path(args[0])
    dst = upgrade(src, Path(args[1]) if len(args) == 2 else src)
    print(f"{dst}: checkpoint format {CHECKPOINT_FORMAT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
