"""How big a checkpoint is, without loading it: its config.json (local folder or Hugging Face cache), a few
well-known architectures, or the size in its name ("8B"). Feeds the memory estimate of `plan`."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Llama-style decoder (Llama, Qwen2/3, Mistral, Gemma, ...)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False
    head_dim: int | None = None
    attention_bias: bool = False

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self._head_dim

    @property
    def _head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def linear_modules(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer in one decoder block, by module name."""
        h, q, kv, i = self.hidden_size, self.num_attention_heads * self._head_dim, self.kv_dim, self.intermediate_size
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_parameters_per_layer(self) -> int:
        bias = self.num_attention_heads * self._head_dim + 2 * self.kv_dim if self.attention_bias else 0
        return sum(a * b for a, b in self.linear_modules().values()) + bias

    def layer_parameters(self) -> int:
        return self.linear_parameters_per_layer() + 2 * self.hidden_size  # + the two RMSNorm weights

    def embedding_parameters(self) -> int:
        """Input embeddings, the final norm and (unless tied) the output head: never quantized by bitsandbytes."""
        head = 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size
        return self.vocab_size * self.hidden_size + head + self.hidden_size

    def parameters(self) -> int:
        return self.num_hidden_layers * self.layer_parameters() + self.embedding_parameters()


@dataclass(frozen=True)
class ModelSize:
    parameters: int | None
    shape: ModelShape | None
    source: str  # where the numbers came from, shown to the user


# Published config.json values of a few common DPO bases, for hub ids that are not downloaded yet.
KNOWN_SHAPES: tuple[tuple[str, ModelShape], ...] = (
    (r"llama-?3(\.\d)?-8b", ModelShape(4096, 14336, 32, 32, 8, 128256)),
    (r"llama-?3(\.\d)?-70b", ModelShape(8192, 28672, 80, 64, 8, 128256)),
    (r"qwen2\.5-7b", ModelShape(3584, 18944, 28, 28, 4, 152064, attention_bias=True)),
    (r"mistral-7b", ModelShape(4096, 14336, 32, 32, 8, 32000)),
)
SIZE_IN_NAME = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def shape_from_config(data: Mapping[str, Any]) -> ModelShape | None:
    """A ModelShape from a transformers config.json (a multimodal one's text_config), or None if it lacks a key."""
    data = data.get("text_config") or data
    try:
        return ModelShape(
            int(data["hidden_size"]), int(data["intermediate_size"]), int(data["num_hidden_layers"]),
            int(data["num_attention_heads"]),
            int(data.get("num_key_value_heads") or data["num_attention_heads"]), int(data["vocab_size"]),
            bool(data.get("tie_word_embeddings", False)),
            int(data["head_dim"]) if data.get("head_dim") else None,
            # Qwen2 always has q/k/v biases and its config.json does not say so.
            bool(data.get("attention_bias", data.get("model_type") == "qwen2")))
    except (KeyError, TypeError, ValueError):
        return None


def model_size(name_or_path: str | None, cwd: Path) -> ModelSize:
    """The size of a checkpoint: local config.json, then the HF cache, then known shapes, then the name."""
    if not name_or_path:
        return ModelSize(None, None, "unknown (no model given)")
    for config_file in _config_files(str(name_or_path), cwd):
        shape = _read_shape(config_file)
        if shape is not None:
            return ModelSize(shape.parameters(), shape, f"{config_file}")
    lowered = str(name_or_path).lower()
    for pattern, shape in KNOWN_SHAPES:
        if re.search(pattern, lowered):
            return ModelSize(shape.parameters(), shape, f"the published config of {name_or_path} (not downloaded)")
    match = SIZE_IN_NAME.search(str(name_or_path).rsplit("/", 1)[-1])
    if match:
        scale = 1e9 if match.group(2).lower() == "b" else 1e6
        return ModelSize(int(float(match.group(1)) * scale), None, f"the size in the name '{match.group(0)}'")
    return ModelSize(None, None, f"unknown (no config.json for {name_or_path} and no size in its name)")


def _config_files(name_or_path: str, cwd: Path) -> list[Path]:
    local = Path(name_or_path).expanduser()
    local = local if local.is_absolute() else cwd / local
    if local.is_dir():
        return [local / "config.json"]
    if name_or_path.count("/") != 1:
        return []
    # The Hugging Face cache layout: <hub>/models--org--name/snapshots/<revision>/config.json (read-only here).
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    snapshots = Path(hub) / ("models--" + name_or_path.replace("/", "--")) / "snapshots"
    return sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []


def _read_shape(config_file: Path) -> ModelShape | None:
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return shape_from_config(data) if isinstance(data, dict) else None
