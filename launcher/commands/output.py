"""What every command's output streams promise, whatever happens to them (used by `launcher.cli`).

- A reader that goes away (`dpo-launch ... | head -1`) changes nothing but the output: writes to a closed pipe
  are dropped (the file descriptor is pointed at /dev/null, so nothing fails at exit either) and the command
  runs to its end with the exit code of its result. `train` keeps supervising its job.
- With `--format json`, stdout carries exactly one JSON object whatever the exit: the command's own, or, when
  it ends in an error, `{"ok": false, "error": {...}}` (`error_object`). What a command wrote before failing
  is held back (`HeldOutput`), so a crash halfway through a write never leaves half an object.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, TextIO

# The commands that take --format json.
JSON_COMMANDS = ("validate", "plan")

# error.kind for each exit code the CLI itself decides
KINDS = {1: "input", 2: "usage", 3: "internal", 130: "interrupted"}


class PipeSafeStream:
    """A text stream whose writes never raise BrokenPipeError: once the reader is gone, output is discarded."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard_from_now_on()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard_from_now_on()

    def _discard_from_now_on(self) -> None:
        """Point the descriptor at /dev/null: what is still buffered, and the interpreter's flush at exit, then go
        nowhere instead of failing (Python would otherwise exit 120;
        https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        try:
            os.dup2(devnull, self._stream.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (tests), or already closed
            pass
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer, ... as the wrapped stream
        return getattr(self._stream, name)


class HeldOutput(io.StringIO):
    """stdout while a `--format json` command runs: released whole when it returns, dropped when it fails."""

    def isatty(self) -> bool:
        return False


def wants_json(argv: list[str]) -> bool:
    """`--format json` (the last --format wins, as argparse reads it) on a command that has --format; read from
    argv so that a usage error, which argparse raises before any value is parsed, is answered in JSON too."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command not in JSON_COMMANDS:
        return False
    value = None
    for index, arg in enumerate(argv):
        if arg == "--format" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--format="):
            value = arg.split("=", 1)[1]
    return value == "json"


def error_object(exit_code: int, message: str, crash_log: Path | None = None) -> dict:
    """The JSON a `--format json` command prints when it ends in an error rather than with a result."""
    return {"ok": False, "error": {"kind": KINDS.get(exit_code, "error"), "exit_code": exit_code,
                                   "message": message, "crash_log": str(crash_log) if crash_log else None}}


def print_json(value: dict, stream: TextIO | PipeSafeStream) -> None:
    stream.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    stream.flush()
