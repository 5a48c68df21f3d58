"""Whisper's audio encoder in plain PyTorch, loaded from the packaged CTranslate2 weights
or from Hugging Face ``openai/whisper-*`` weights.

Robust Speech Recognition via Large-Scale Weak Supervision (Radford et al., 2022),
https://arxiv.org/abs/2212.04356. Every speechrag model shares this encoder, so the
cascade vs end-to-end comparison is about the method, not the encoder.

Unlike Whisper's own inference, it runs on the actual audio length (no padding of
a 5 s clip to 30 s), so cost follows audio length; audio longer than 30 s is encoded
in 30 s chunks whose states are concatenated, so no tail is lost.

Shapes: B batch, F = 80 mel bins, T mel frames (100 per second), S = ceil(T / 2)
encoder states (50 per second), D model width (384 tiny, 512 base).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speechrag.assets import resolve
from speechrag.models.ct2 import read_ct2

N_MELS = 80
HOP_SAMPLES = 160  # 10 ms mel hop: 100 frames per second
MAX_FRAMES = 3000  # 30 s: Whisper's positional table covers 1500 states
FRAMES_PER_STATE = 2  # conv2 has stride 2


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Dimensions read off the weights; saved in checkpoints beside the asset name."""

    n_state: int
    n_head: int
    n_layer: int
    n_ctx: int = MAX_FRAMES // FRAMES_PER_STATE
    n_mels: int = N_MELS

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.attn_ln = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.mlp_ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
        """x (B, S, D); key_padding (B, S) True where a state is padding."""
        b, s, d = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))
        mask = None if key_padding is None else ~key_padding[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(a.transpose(1, 2).reshape(b, s, d))
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """conv1 -> GELU -> conv2 (stride 2) -> GELU -> + positions -> blocks -> LayerNorm."""

    def __init__(self, config: WhisperEncoderConfig) -> None:
        super().__init__()
        self.config = config
        d = config.n_state
        self.conv1 = nn.Conv1d(config.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(config.n_ctx, d))
        self.blocks = nn.ModuleList(_Block(d, config.n_head) for _ in range(config.n_layer))
        self.ln_post = nn.LayerNorm(d)

    def forward(self, mel: torch.Tensor, n_frames: torch.Tensor | None = None,
                return_layers: bool = False, n_blocks: int | None = None
                ) -> torch.Tensor | list[torch.Tensor]:
        """mel (B, F, T) with T <= 3000 -> states (B, S, D), S = ceil(T / 2).

        n_frames (B,): true frame counts when the batch is padded; padded states are
        masked out of attention. With ``return_layers`` the output of every block
        (before the final LayerNorm) is returned too, last one normed: a list of n_layer.
        ``n_blocks`` < n_layer stops after that many blocks, before the final LayerNorm
        (the input of a model's trained top blocks, :mod:`speechrag.models.encoder_top`).
        """
        if mel.shape[-1] > MAX_FRAMES:
            raise ValueError(f"{mel.shape[-1]} frames > {MAX_FRAMES}: longer audio goes through "
                             "SpeechStates, which cuts it into pieces")
        x = F.gelu(self.conv1(mel))
        if n_frames is not None:  # conv2 must see zeros past the end, as in a lone run
            x = x * (torch.arange(x.shape[-1], device=x.device)[None] < n_frames[:, None])[:, None]
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[: x.shape[1]].to(x.dtype)
        key_padding = None
        if n_frames is not None:
            n_states = (n_frames + FRAMES_PER_STATE - 1) // FRAMES_PER_STATE
            key_padding = torch.arange(x.shape[1], device=x.device)[None] >= n_states[:, None]
        layers = []
        n = self.config.n_layer if n_blocks is None else n_blocks
        for block in self.blocks[:n]:
            x = block(x, key_padding)
            layers.append(x)
        if n < self.config.n_layer:
            return layers if return_layers else x
        x = self.ln_post(x)
        if return_layers:
            return [*layers[:-1], x]
        return x

    @classmethod
    def from_ct2(cls, model_dir: str | Path) -> WhisperEncoder:
        """Build from a CTranslate2 Whisper directory (``model.bin``)."""
        w = read_ct2(Path(model_dir) / "model.bin", keep=lambda n: n.startswith("encoder/"))
        n_layer = 1 + max(int(k.split("/")[1].split("_")[1]) for k in w
                          if k.startswith("encoder/layer_") and "layer_norm" not in k.split("/")[1])
        n_state = w["encoder/conv1/weight"].shape[0]
        config = WhisperEncoderConfig(n_state=n_state, n_head=int(w["encoder/num_heads"]),
                                      n_layer=n_layer,
                                      n_ctx=w["encoder/position_encodings/encodings"].shape[0])
        model = cls(config)
        state = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias",
                 "conv2.weight": "conv2/weight", "conv2.bias": "conv2/bias",
                 "positions": "position_encodings/encodings",
                 "ln_post.weight": "layer_norm/gamma", "ln_post.bias": "layer_norm/beta"}
        for i in range(n_layer):
            p = f"layer_{i}"
            state |= {
                f"blocks.{i}.attn_ln.weight": f"{p}/self_attention/layer_norm/gamma",
                f"blocks.{i}.attn_ln.bias": f"{p}/self_attention/layer_norm/beta",
                f"blocks.{i}.qkv.weight": f"{p}/self_attention/linear_0/weight",
                f"blocks.{i}.qkv.bias": f"{p}/self_attention/linear_0/bias",
                f"blocks.{i}.out.weight": f"{p}/self_attention/linear_1/weight",
                f"blocks.{i}.out.bias": f"{p}/self_attention/linear_1/bias",
                f"blocks.{i}.mlp_ln.weight": f"{p}/ffn/layer_norm/gamma",
                f"blocks.{i}.mlp_ln.bias": f"{p}/ffn/layer_norm/beta",
                f"blocks.{i}.mlp.0.weight": f"{p}/ffn/linear_0/weight",
                f"blocks.{i}.mlp.0.bias": f"{p}/ffn/linear_0/bias",
                f"blocks.{i}.mlp.2.weight": f"{p}/ffn/linear_1/weight",
                f"blocks.{i}.mlp.2.bias": f"{p}/ffn/linear_1/bias",
            }
        tensors = {ours: w[f"encoder/{theirs}"].float() for ours, theirs in state.items()}
        model.load_state_dict(tensors, strict=True)
        return model.eval()

    @classmethod
    def from_hf(cls, model_dir: str | Path) -> WhisperEncoder:
        """Build from a Hugging Face transformers Whisper directory (``config.json`` plus
        ``model.safetensors`` or ``pytorch_model.bin``), the format of the ``openai/whisper-*``
        repos. Read with safetensors / torch directly: loading transformers' whole
        WhisperForConditionalGeneration would build the decoder too, only to drop it."""
        root = Path(model_dir)
        try:
            hf = json.loads((root / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{root}: not a Hugging Face Whisper directory ({err})") from err
        if hf.get("model_type") != "whisper":
            raise ValueError(f"{root}: config.json is a {hf.get('model_type')!r} model, "
                             "not whisper")
        w = _read_hf_weights(root)
        prefix = next((p for p in ("model.encoder.", "encoder.") if p + "conv1.weight" in w),
                      None)
        if prefix is None:
            raise ValueError(f"{root}: no Whisper encoder weights (encoder.conv1.weight)")
        d, n_layer = int(hf["d_model"]), int(hf["encoder_layers"])
        if int(hf.get("encoder_ffn_dim", 4 * d)) != 4 * d:
            raise ValueError(f"{root}: encoder_ffn_dim {hf['encoder_ffn_dim']} is not "
                             f"4 x d_model ({4 * d}), as in every Whisper")
        config = WhisperEncoderConfig(n_state=d, n_head=int(hf["encoder_attention_heads"]),
                                      n_layer=n_layer, n_ctx=int(hf["max_source_positions"]),
                                      n_mels=int(hf.get("num_mel_bins", N_MELS)))
        model = cls(config)

        def get(name: str) -> torch.Tensor:
            return w[prefix + name].float()

        state = {"conv1.weight": get("conv1.weight"), "conv1.bias": get("conv1.bias"),
                 "conv2.weight": get("conv2.weight"), "conv2.bias": get("conv2.bias"),
                 "positions": get("embed_positions.weight"),
                 "ln_post.weight": get("layer_norm.weight"),
                 "ln_post.bias": get("layer_norm.bias")}
        for i in range(n_layer):
            p, a = f"blocks.{i}.", f"layers.{i}.self_attn."
            q, k, v = (get(f"{a}{x}_proj.weight") for x in "qkv")
            state |= {  # the key projection has no bias in Whisper
                p + "qkv.weight": torch.cat([q, k, v]),
                p + "qkv.bias": torch.cat([get(a + "q_proj.bias"), torch.zeros(d),
                                           get(a + "v_proj.bias")]),
                p + "out.weight": get(a + "out_proj.weight"),
                p + "out.bias": get(a + "out_proj.bias"),
                p + "attn_ln.weight": get(f"layers.{i}.self_attn_layer_norm.weight"),
                p + "attn_ln.bias": get(f"layers.{i}.self_attn_layer_norm.bias"),
                p + "mlp.0.weight": get(f"layers.{i}.fc1.weight"),
                p + "mlp.0.bias": get(f"layers.{i}.fc1.bias"),
                p + "mlp.2.weight": get(f"layers.{i}.fc2.weight"),
                p + "mlp.2.bias": get(f"layers.{i}.fc2.bias"),
                p + "mlp_ln.weight": get(f"layers.{i}.final_layer_norm.weight"),
                p + "mlp_ln.bias": get(f"layers.{i}.final_layer_norm.bias"),
            }
        model.load_state_dict(state, strict=True)
        return model.eval()

    @classmethod
    def load(cls, name: str = "whisper-base") -> WhisperEncoder:
        """By asset name (``whisper-base``, ``whisper-tiny.en``), a CTranslate2 or Hugging
        Face directory, or a Hugging Face repo id (``openai/whisper-small``: downloaded once
        into the Hugging Face cache, for users with a network)."""
        path = Path(resolve(name))
        if (path / "model.bin").is_file():
            return cls.from_ct2(path)
        if (path / "config.json").is_file():
            return cls.from_hf(path)
        if path.exists() or "/" not in name:
            raise ValueError(f"{name}: not a Whisper model (no CTranslate2 model.bin and no "
                             "Hugging Face config.json)")
        return cls.from_hf(_download(name))


def _read_hf_weights(root: Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face checkpoint directory (safetensors preferred)."""
    files = sorted(root.glob("model*.safetensors"))
    if files:
        from safetensors.torch import load_file

        out: dict[str, torch.Tensor] = {}
        for f in files:  # one file, or the shards of a big model
            out |= load_file(f)
        return out
    bins = sorted(root.glob("pytorch_model*.bin"))
    if not bins:
        raise ValueError(f"{root}: no model.safetensors or pytorch_model.bin")
    out = {}
    for f in bins:
        out |= torch.load(f, map_location="cpu", weights_only=True)
    return out


def _download(repo_id: str) -> Path:
    """A Hugging Face repo's config and weights, fetched once into the HF cache."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=[
            "config.json", "model*.safetensors", "model.safetensors.index.json"]))
    except Exception as err:  # offline, unknown repo, no permission: say which
        raise ValueError(f"{repo_id}: could not fetch the Whisper weights from the "
                         f"Hugging Face hub ({type(err).__name__}: {err})") from err


class LogMel:
    """Whisper's log-mel features (faster-whisper's extractor) on the actual length.
    n_mels: 80, or 128 for large-v3 (the encoder's config says which)."""

    def __init__(self, n_mels: int = N_MELS) -> None:
        from faster_whisper.feature_extractor import FeatureExtractor

        self.extractor = FeatureExtractor(feature_size=n_mels)

    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        """samples (n,) float32 at 16 kHz -> mel (F, T), T = n // 160."""
        n_frames = max(1, len(samples) // HOP_SAMPLES)
        mel = self.extractor(np.asarray(samples, dtype=np.float32), padding=HOP_SAMPLES)
        return torch.from_numpy(np.ascontiguousarray(mel[:, :n_frames])).float()
