"""What every config rule reads: the config's values typed as LLaMA-Factory uses them, with its defaults.

The schema check reports wrong types; a rule whose inputs have the wrong type is skipped (it raises `NotApplicable`
through the typed getters), so the rules never crash on a config the schema already rejects.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.check.config import LoadedConfig
from launcher.check.diagnostics import ERROR, NOTE, WARNING, Diagnostic
from launcher.lf.deepspeed import deepspeed_path, read_deepspeed, zero_stage
from launcher.lf.settings import setting


class NotApplicable(Exception):
    """A rule input has a type the schema rejects: the rule does not apply (the schema check reports the type)."""


@dataclass
class RuleContext:
    loaded: LoadedConfig
    cwd: Path
    # `dpo-launch train` (or `plan`) will run it: a rule about what `llamafactory-cli train` would get wrong and
    # `dpo-launch train` fixes says what train does instead, as a note
    launching: bool = False
    _deepspeed: Any = field(default=None, repr=False)
    _deepspeed_read: bool = field(default=False, repr=False)

    # --- typed values ---------------------------------------------------------------------------------------

    @property
    def values(self) -> dict[str, Any]:
        return self.loaded.values

    def raw(self, key: str) -> Any:
        """The config's value, else the default; None when unset."""
        return setting(self.values, key)

    def is_set(self, key: str) -> bool:
        return self.values.get(key) is not None

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise NotApplicable(key)
        return value

    def number(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NotApplicable(key)
        return value

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise NotApplicable(key)
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
        raise NotApplicable(key)

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
        """A reference model is built: DPO losses that use one, and KTO whatever pref_loss says
        (docs/upstream-notes.md#reference-model)."""
        return self.uses_ref_model() or self.stage == "kto"

    # --- DeepSpeed ------------------------------------------------------------------------------------------

    def deepspeed_path(self) -> Path | None:
        return deepspeed_path(self.raw("deepspeed"), self.cwd)

    def deepspeed_config(self) -> dict | None:
        """The DeepSpeed config as a dict (inline mapping or the JSON file), or None when unset or unreadable."""
        if not self._deepspeed_read:
            self._deepspeed_read = True
            self._deepspeed = read_deepspeed(self.raw("deepspeed"), self.cwd)
        return self._deepspeed

    def zero_stage(self) -> int | None:
        """The ZeRO stage of the DeepSpeed config (0 when it has no zero_optimization), None without DeepSpeed."""
        return zero_stage(self.deepspeed_config())

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


def lf_says(message: str) -> str:
    """LLaMA-Factory's own wording, quoted so users recognise the error they would get from it."""
    return f'LLaMA-Factory stops with "{message}"'
