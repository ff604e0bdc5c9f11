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
