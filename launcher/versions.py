"""Installed versions of the training stack, read from package metadata: nothing is imported.

`train` records them in versions.json; the worker names them when it explains which loss runs.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

VERSIONED_PACKAGES = ("dpo-launch", "llamafactory", "torch", "transformers", "trl", "peft", "accelerate",
                      "datasets", "deepspeed", "tensorboard", "tokenizers")


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, Any]:
    """Python, the platform and each package of the stack (None when not installed)."""
    versions: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    versions.update({name: installed_version(name) for name in VERSIONED_PACKAGES})
    return versions


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: '0.43.1.post1' -> (0, 43, 1), '2.8.3+cu12' -> (2, 8, 3)."""
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(numbers)


def at_least(version: str, minimum: str) -> bool:
    """Whether `version`'s release is `minimum`'s or newer (pre-releases count as their release)."""
    have, want = release(version), release(minimum)
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) >= want + (0,) * (width - len(want))
