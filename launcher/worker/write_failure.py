"""A one-line account of a failed write, for the worker to print instead of a traceback.

A full disk (or a file size limit) while the trainer saves `checkpoint-N` raises from deep inside
safetensors (Rust: `I/O error: No space left on device (os error 28)`), torch.save (`PytorchStreamWriter failed
writing file ...`, no errno at all) or plain `open().write()` (OSError). The worker turns any of them into
"cannot write FILE (saving checkpoint-N): ERROR", read from the exception and the frames it passed through.

No heavy imports here: the exception and its frames are all it reads.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from launcher.layout import complete_checkpoints

# Where an errno hides in the messages of libraries that do not raise OSError.
RUST_OS_ERROR = re.compile(r"Os \{ code: (\d+)|\(os error (\d+)\)")
WRITE_FAILURE_TEXT = ("PytorchStreamWriter failed writing", "file write failed", "Error while serializing")
# Argument names under which the writers we pass through hold the path they write.
PATH_LOCALS = ("filename", "f", "file", "path", "save_path", "output_file", "save_directory")
HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file size limit (ulimit -f) or the file system's largest file size was reached",
}


def describe_write_failure(exc: BaseException, output_dir: str | None = None) -> str | None:
    """"cannot write FILE (saving checkpoint-N): ERROR; HINT; the last complete checkpoint is ..." for an
    exception raised by a failed write, None for any other exception."""
    code, text = _write_error(exc)
    checkpoint = _frame_local(exc, "_save_checkpoint", "output_dir")
    if text is None and checkpoint is None:
        return None
    target = _written_path(exc)
    saving = f" (saving {Path(checkpoint).name})" if checkpoint else ""
    message = f"cannot write {target or checkpoint or 'a file'}{saving}: {text or 'the write failed'}"
    hint = HINTS.get(code) if code else None
    place = Path(target or checkpoint or output_dir or ".")
    message += f"; {hint}" if hint else ""
    message += f"; {_free_space(place)}"
    if output_dir:
        message += "; " + _resume_advice(Path(output_dir), checkpoint)
    return message


def _write_error(exc: BaseException) -> tuple[int | None, str | None]:
    """(errno or None, the error as text) for the first exception in the chain that is a failed write."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno is not None:
            return item.errno, f"[Errno {item.errno}] {item.strerror or os.strerror(item.errno)}"
        message = str(item)
        if match := RUST_OS_ERROR.search(message):
            code = int(match.group(1) or match.group(2))
            return code, f"[Errno {code}] {os.strerror(code)}"
        if any(text in message for text in WRITE_FAILURE_TEXT):
            return None, message.strip().splitlines()[-1][:200]
    return None, None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _frames(exc: BaseException):
    """Frames from the innermost outwards, over the whole exception chain."""
    for item in _chain(exc):
        frames, tb = [], item.__traceback__
        while isinstance(tb, TracebackType):
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        yield from reversed(frames)


def _frame_local(exc: BaseException, function: str, name: str) -> str | None:
    for frame in _frames(exc):
        if frame.f_code.co_name == function and isinstance(frame.f_locals.get(name), (str, os.PathLike)):
            return os.fspath(frame.f_locals[name])
    return None


def _written_path(exc: BaseException) -> str | None:
    """The file being written: OSError's own filename, else the innermost writer's path argument."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.filename:
            return os.fspath(item.filename)
    for frame in _frames(exc):
        for name in PATH_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)) and os.fspath(value):
                return os.fspath(value)
    return None


def _free_space(path: Path) -> str:
    for candidate in [path, *path.parents]:
        try:
            usage = shutil.disk_usage(candidate)
        except OSError:
            continue
        return f"{usage.free / 2**20:.1f} MiB free on the file system of {candidate}"
    return "free space unknown"


def _resume_advice(output_dir: Path, failed: str | None) -> str:
    good = [p for p in complete_checkpoints(output_dir) if not failed or p.name != Path(failed).name]
    if not good:
        return "no complete checkpoint to resume from"
    return f"the last complete checkpoint is {good[-1]} (`dpo-launch train --resume` continues from it)"
