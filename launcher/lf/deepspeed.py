"""The DeepSpeed config a LLaMA-Factory config names: read once, the same way by every stage.

`deepspeed:` holds a path (relative to the working directory, as transformers opens it) or an inline mapping.
`check/` reports a file that cannot be read; everyone else gets None for it and carries on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def deepspeed_path(value: Any, cwd: Path) -> Path | None:
    """The JSON file `deepspeed:` points at, resolved from `cwd`; None for an inline mapping or no value."""
    if not isinstance(value, str) or not value.strip():
        return None
    return Path(cwd) / value


def load_json_object(path: Path) -> Any:
    """The parsed file; raises OSError, UnicodeDecodeError, ValueError (bad JSON) or RecursionError."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_deepspeed(value: Any, cwd: Path) -> dict | None:
    """The DeepSpeed config as a dict (the inline mapping or the JSON file), None when unset or unreadable."""
    if isinstance(value, Mapping):
        return dict(value)
    path = deepspeed_path(value, cwd)
    if path is None:
        return None
    try:
        data = load_json_object(path)
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class ZeroSettings:
    stage: int | None  # None: no DeepSpeed
    offload_optimizer: bool = False
    offload_param: bool = False

    @property
    def label(self) -> str:
        if self.stage is None:
            return "no DeepSpeed"
        offload = [name for name, on in (("optimizer", self.offload_optimizer), ("params", self.offload_param)) if on]
        return f"ZeRO-{self.stage}" + (f" + offload {'/'.join(offload)}" if offload else "")


def zero_stage(data: Mapping[str, Any] | None) -> int | None:
    """The ZeRO stage of a DeepSpeed config (0 without zero_optimization); None without a config or for a stage
    that is not a whole number."""
    if data is None:
        return None
    zero = data.get("zero_optimization")
    stage = zero.get("stage", 0) if isinstance(zero, Mapping) else 0
    return stage if isinstance(stage, int) and not isinstance(stage, bool) else None


def zero_settings(config: Mapping[str, Any], cwd: Path) -> ZeroSettings:
    """The ZeRO stage and offloads of the config's `deepspeed` (stage 0 when the file cannot be read: validate
    reports it, and plan refuses before it gets here)."""
    if not config.get("deepspeed"):
        return ZeroSettings(None)
    data = read_deepspeed(config.get("deepspeed"), cwd)
    if data is None:
        return ZeroSettings(0)
    zero = data.get("zero_optimization")
    zero = zero if isinstance(zero, Mapping) else {}
    return ZeroSettings(zero_stage(data) or 0, _offloaded(zero.get("offload_optimizer")),
                        _offloaded(zero.get("offload_param")))


def _offloaded(block: Any) -> bool:
    return isinstance(block, Mapping) and str(block.get("device", "none")).lower() not in ("none", "")
