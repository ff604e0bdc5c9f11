"""The sha256 of a file's content, read in 1 MiB blocks: what the run directory records of its datasets
(launcher.run.rundir), what the reference log-prob cache is keyed on (launcher.worker.ref_cache) and what
`generate` records of its prompts file (launcher.evaluate.prompts). Standard library only."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex digest of the file's bytes (OSError when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["file_sha256"]
