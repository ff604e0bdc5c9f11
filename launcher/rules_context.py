"""What every config rule reads: the config's values typed as LLaMA-Factory uses them, with its defaults.

The schema check reports wrong types; a rule whose inputs have the wrong type is skipped (it raises `Skip`
through the typed getters), so the rules never crash on a config the schema already rejects.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.config import LoadedConfig
from launcher.diagnostics import ERROR, NOTE, WARNING, Diagnostic

# LLaMA-Factory 0.9.5 / transformers 5.6 defaults of the keys the rules read (hparams/*.py,
# transformers/training_args.py). None means "unset".
DEFAULTS: dict[str, Any] = {
    "stage": "sft", "finetuning_type": "lora", "pref_loss": "sigmoid", "pref_beta": 0.1, "simpo_gamma": 0.5,
    "dpo_label_smoothing": 0.0, "mix_strategy": "concat", "val_size": 0.0, "max_steps": -1,
    "num_train_epochs": 3.0, "learning_rate": 5e-5, "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1, "max_grad_norm": 1.0, "adam_beta1": 0.9, "adam_beta2": 0.999,
    "adam_epsilon": 1e-8, "weight_decay": 0.0, "eval_strategy": "no", "save_strategy": "steps",
    "lr_scheduler_type": "linear", "infer_backend": "huggingface", "report_to": "none",
    "image_max_pixels": 768 * 768, "image_min_pixels": 32 * 32,
    "video_max_pixels": 256 * 256, "video_min_pixels": 16 * 16, "flash_attn": "auto",
}

# LLaMA-Factory compares val_size against this to decide whether it is set (data_args.py).
EPSILON = 1e-6


class Skip(Exception):
    """A rule input has a type the schema rejects: the rule does not apply."""


@dataclass
class RuleContext:
    loaded: LoadedConfig
    cwd: Path
    _deepspeed: Any = field(default=None, repr=False)
    _deepspeed_read: bool = field(default=False, repr=False)

    # --- typed values ---------------------------------------------------------------------------------------

    @property
    def values(self) -> dict[str, Any]:
        return self.loaded.values

    def raw(self, key: str) -> Any:
        """The config's value, else the default; None when unset."""
        value = self.values.get(key)
        return DEFAULTS.get(key) if value is None else value

    def is_set(self, key: str) -> bool:
        return self.values.get(key) is not None

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise Skip(key)
        return value

    def number(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Skip(key)
        return value

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise Skip(key)
        return value

    def names(self, key: str) -> list[str] | None:
        """A comma-split key (dataset, adapter_name_or_path, ...) as LLaMA-Factory's split_arg reads it."""
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            return [item.strip() for item in value.split(",")]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return [item.strip() for item in value]
        raise Skip(key)

    @property
    def stage(self) -> str | None:
        return self.text("stage")

    @property
    def finetuning_type(self) -> str | None:
        return self.text("finetuning_type")

    def uses_ref_model(self) -> bool:
        """LF's derived `use_ref_model` (finetuning_args.py): DPO with a loss that needs a reference."""
        return self.stage == "dpo" and self.text("pref_loss") not in ("orpo", "simpo")

    def builds_reference(self) -> bool:
        """A reference model is built: DPO losses that use one, and KTO whatever pref_loss says (REFERENCE §7)."""
        return self.uses_ref_model() or self.stage == "kto"

    # --- DeepSpeed ------------------------------------------------------------------------------------------

    def deepspeed_path(self) -> Path | None:
        value = self.raw("deepspeed")
        if not isinstance(value, str) or not value.strip():
            return None
        return self.cwd / value

    def deepspeed_config(self) -> dict | None:
        """The DeepSpeed config as a dict (inline mapping or the JSON file), or None when unset or unreadable."""
        if not self._deepspeed_read:
            self._deepspeed_read = True
            self._deepspeed = _read_deepspeed(self.raw("deepspeed"), self.deepspeed_path())
        return self._deepspeed

    def zero_stage(self) -> int | None:
        """The ZeRO stage of the DeepSpeed config (0 when it has no zero_optimization), None without DeepSpeed."""
        config = self.deepspeed_config()
        if config is None:
            return None
        zero = config.get("zero_optimization")
        stage = zero.get("stage", 0) if isinstance(zero, dict) else 0
        return stage if isinstance(stage, int) and not isinstance(stage, bool) else None

    def zero3(self) -> bool:
        return self.zero_stage() == 3

    # --- diagnostics ----------------------------------------------------------------------------------------

    def at(self, severity: str, code: str, message: str, key: str | None, hint: str | None = None) -> Diagnostic:
        """A diagnostic at `key`'s value (or the file when the key is not written: a default is to blame)."""
        return self.loaded.diagnostic(severity, code, message, key, hint=hint)

    def error(self, code: str, message: str, key: str | None, hint: str | None = None) -> Diagnostic:
        return self.at(ERROR, code, message, key, hint)

    def warning(self, code: str, message: str, key: str | None, hint: str | None = None) -> Diagnostic:
        return self.at(WARNING, code, message, key, hint)

    def note(self, code: str, message: str, key: str | None, hint: str | None = None) -> Diagnostic:
        return self.at(NOTE, code, message, key, hint)

    def first_written(self, *keys: str) -> str:
        """The first of `keys` the config writes, to locate a diagnostic about several keys."""
        return next((key for key in keys if key in self.values), keys[0])


def path_kind(path: Path) -> tuple[str, str]:
    """('dir' | 'file' | 'other' | 'missing' | 'unusable', reason), never raising: a config value can hold a NUL
    byte, a name too long for the OS or a symlink loop, and pathlib's exists()/is_file() raise on some of those."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing", ""
    except (OSError, ValueError) as exc:
        return "unusable", getattr(exc, "strerror", None) or str(exc)
    return ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"), ""


def _read_deepspeed(value: Any, path: Path | None) -> dict | None:
    if isinstance(value, dict):
        return value
    if path is None or path_kind(path)[0] != "file":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def lf_says(message: str) -> str:
    """LLaMA-Factory's own wording, quoted so users recognise the error they would get from it."""
    return f'LLaMA-Factory stops with "{message}"'


def show(value: Any) -> str:
    """A config value as a user wrote it: strings quoted, numbers and booleans as YAML writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, float):  # 1e-05 -> 1e-5, as people write it
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:g}")
    return str(value)
