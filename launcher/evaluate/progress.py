"""A progress line for work measured from what is on disk (chunk files), redrawn in place on a terminal and
printed every few seconds otherwise (logs, CI). Written to stderr, so `--format json` output stays clean."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, unit: str, done: int = 0, stream: TextIO | None = None,
                 every: float = 10.0):
        self.label, self.total, self.unit = label, total, unit
        self.start_done, self.done = done, done
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.every, self.last_print = every, 0.0
        self.printed: int | None = None  # the count the last printed line showed
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.live:
            self._write("\r" + self.line() + "\x1b[K")
        elif now - self.last_print >= self.every:
            self._write(self.line() + "\n")
            self.printed = done
        else:
            return
        self.last_print = now

    def close(self) -> None:
        if not self.live and self.last_print and self.done == self.printed:
            return  # the last line printed already says it
        self._write(("\r" if self.live else "") + self.line() + ("\x1b[K\n" if self.live else "\n"))

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        text = f"{self.label}: {self.done}/{self.total} {self.unit}"
        if rate > 0:
            remaining = (self.total - self.done) / rate
            text += f", {rate:.2f}/s, ETA {_duration(remaining)}" if self.done < self.total else \
                f", {rate:.2f}/s, {_duration(elapsed)}"
        return text

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
