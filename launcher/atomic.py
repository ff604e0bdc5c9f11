"""Atomic file writes.

A write goes to a temporary file in the target's directory (so the final rename stays on one file system),
is flushed and fsync'ed, then `os.replace`d over the target: readers see the old file or the new one, never
a mix. On any exception (KeyboardInterrupt included) the temporary file is removed and the target untouched.
A SIGKILL mid-write leaves the target intact too, plus a `.<name>.*.tmp` file next to it.

A symbolic link is written through, as `open(path, "w")` would: its target is replaced and the link stays a
link (a shared dataset_info.json linked into a dataset_dir stays shared).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit it replaces `path`, on an exception it vanishes."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    import tempfile  # here: `validate` imports this module and writes nothing; tempfile costs it ~5 ms

    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # newline="": write the text's own line endings as given
        handle_args: dict[str, Any] = {} if "b" in mode else {"encoding": encoding, "newline": ""}
        with os.fdopen(fd, mode, **handle_args) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _keep_mode(path, temp)
        os.replace(temp, path)
    except BaseException:
        _remove_quietly(temp)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: str | Path, content: str) -> None:
    with atomic_write(path) as handle:
        handle.write(content)


def _keep_mode(path: Path, temp: str) -> None:
    """mkstemp creates 0600 files; keep an existing file's mode, else use the umask's default."""
    if path.exists():
        os.chmod(temp, path.stat().st_mode & 0o7777)
        return
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)


def _remove_quietly(temp: str) -> None:
    try:
        os.unlink(temp)
    except FileNotFoundError:
        pass


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); not possible (nor needed) on every platform."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
