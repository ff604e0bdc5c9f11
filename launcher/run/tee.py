"""The job's output, as the launcher passes it on: to the terminal, to `logs/launcher.log` and, per rank, to
`logs/rank-N.log` (lines torchrun prefixes with `[rankN]: `; everything, for a single process).

The logs get every line; the terminal only the lines a rank marked for it (launcher.rank_output: dpo-launch's
own lines, warnings and errors) and torchrun's own lines, or every line with `--verbose`.

torchrun relays each rank's output by tailing its log file (torch/distributed/elastic/multiprocessing/tail_log.py
`tail_logfile`) and writes what it read, with the rank's prefix, whole lines or not: a progress bar (no newline)
of one rank is then followed on the same line by the next line of another, `[rank0]:  3%|▎ | 1/30[rank1]: ...`.
So a line is cut again at each rank prefix inside it, and each rank's pieces are put back together: its log gets
its bytes in order, and the console decides on its whole lines (a rank's closing line went to rank 0 before).

Neither a full disk nor a terminal that went away (a closed SSH session: writes fail with EIO or EPIPE) stops
the job: the logs stop (and the terminal then shows every line), or the terminal output does, and the rest goes on.
"""

from __future__ import annotations

import collections
import os
import re
import sys
from pathlib import Path
from typing import IO, Self

from launcher.rank_output import shown_part, unmarked

RANK_LINE = re.compile(rb"^\[rank(\d+)\]: ?")
# torchrun's prefix after a rank's unfinished line; the space (launcher.plan.launch.RANK_PREFIX_TEMPLATE) sets it
# apart from c10's own `[rank1]:[W...` at the start of a rank's warnings
RANK_PREFIX_INSIDE = re.compile(rb"\[rank\d+\]: ")
PENDING_BYTES = 64 << 10  # of a rank's unfinished line, what the console may still need (the bar's last state)
TAIL_LINES = 15  # of a failed rank's last lines the console did not show, shown at its end


class Tee:
    """The job's output to the terminal, logs/launcher.log and (per rank) logs/rank-N.log."""

    def __init__(self, logs_dir: Path, distributed: bool, verbose: bool = False):
        self.logs_dir = logs_dir
        self.distributed = distributed
        self.verbose = verbose
        self.rank_logs: dict[int, IO[bytes]] = {}
        self.logging = True
        # per rank, what it printed since the last line the console showed: a rank that dies outside the
        # worker's own handler (a C++ abort, an import error, a thread's traceback) says why only there
        self.unshown: dict[int, collections.deque[str]] = {}
        self.pending: dict[int | None, tuple[bytes, bytes]] = {}  # per rank, (its prefix, its unfinished line)

    def __enter__(self) -> Self:
        # unbuffered, so what a killed launcher received is on disk; open for the whole run
        self.launcher_log = open(self.logs_dir / "launcher.log", "ab", buffering=0)
        return self

    def __exit__(self, *exc) -> None:
        for handle in [self.launcher_log, *self.rank_logs.values()]:
            handle.close()

    def line(self, raw: bytes) -> None:
        """One line of the job's output as read from its pipe (a single process's own, or torchrun's relay)."""
        pieces = self._pieces(raw) if self.distributed else [raw]
        for at, piece in enumerate(pieces):
            rank, prefix, body = self._split(piece)
            if self.logging:  # the rank log gets its bytes as they come; launcher.log whole lines
                finished = piece if at == len(pieces) - 1 else piece + b"\n"
                self._log(unmarked(finished), rank, unmarked(body))
            if at < len(pieces) - 1 or not body.endswith(b"\n"):
                self.pending[rank] = (prefix, (self.pending.get(rank, (b"", b""))[1] + body)[-PENDING_BYTES:])
            else:
                self._whole_line(rank, prefix, self.pending.pop(rank, (b"", b""))[1] + body)

    def end_of_output(self) -> None:
        """The pipe is at its end: what the ranks left unfinished is all they will say."""
        for rank, (prefix, body) in list(self.pending.items()):
            del self.pending[rank]
            self._whole_line(rank, prefix, body if body.endswith(b"\n") else body + b"\n")

    @staticmethod
    def _pieces(raw: bytes) -> list[bytes]:
        """The line cut before each rank prefix inside it."""
        cuts = [match.start() for match in RANK_PREFIX_INSIDE.finditer(raw, 1)]
        return [raw[start:end] for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True)] if cuts else [raw]

    def _whole_line(self, rank: int | None, prefix: bytes, body: bytes) -> None:
        raw = prefix + body
        # once the logs cannot be written, the terminal is the only place left: it gets every line
        shown: bytes | None
        if self.verbose or not self.logging:
            shown = unmarked(raw)
        elif rank is None:
            shown = raw  # torchrun's own line
        else:
            part = shown_part(body)
            shown = None if part is None else prefix + part
        if shown:
            write_out(sys.stdout, shown.decode("utf-8", "replace"))
        if rank is not None:
            self._remember(rank, body, bool(shown))

    def _split(self, raw: bytes) -> tuple[int | None, bytes, bytes]:
        """(rank, its `[rankN]: ` prefix, the rest); rank None for a line of torchrun's own (several ranks), 0
        for every line of a single process."""
        match = RANK_LINE.match(raw)
        if match is None:
            return (None if self.distributed else 0), b"", raw
        return int(match.group(1)), raw[:match.end()], raw[match.end():]

    def _remember(self, rank: int, body: bytes, shown: bool) -> None:
        if shown:
            self.unshown.pop(rank, None)
        else:
            text = unmarked(body).decode("utf-8", "replace").rstrip("\r\n")
            self.unshown.setdefault(rank, collections.deque(maxlen=TAIL_LINES)).append(text)

    def last_unshown(self, rank: int) -> list[str]:
        """The rank's last lines (up to TAIL_LINES) if the console did not show its last words, else none."""
        return list(self.unshown.get(rank, ()))

    def _log(self, raw: bytes, rank: int | None, body: bytes) -> None:
        """Into the log files; a full disk stops the logging, never the job (from then on the terminal gets every
        line, the ones only the logs had included)."""
        try:
            self.launcher_log.write(raw)
            if rank is not None:
                self.rank_log(rank).write(body)
        except OSError as exc:
            self.logging = False
            write_out(sys.stderr, f"dpo-launch: cannot write the logs in {self.logs_dir} ({exc.strerror or exc}); "
                                  "from here on every line of the job's output is shown here instead\n")

    def rank_log(self, rank: int) -> IO[bytes]:
        if rank not in self.rank_logs:
            self.rank_logs[rank] = open(self.logs_dir / f"rank-{rank}.log", "ab", buffering=0)  # noqa: SIM115
        return self.rank_logs[rank]

    def say(self, message: str | None) -> None:
        """A line of the launcher's own, to stderr and launcher.log."""
        if not message:
            return
        write_out(sys.stderr, message + "\n")
        if self.logging:
            try:
                self.launcher_log.write((message + "\n").encode())
            except OSError:
                pass


def write_out(stream, text: str) -> None:
    """As text, not to `stream.buffer`: a live metrics view (launcher.observe.run_state) redirects sys.stdout and
    scrolls text written to it above the view. A closed terminal or pipe must not stop the supervision."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def detach_from_terminal() -> None:
    """After SIGHUP (the terminal hung up): stdout and stderr that are a terminal go to /dev/null, so no later
    write fails; what the launcher says still goes to launcher.log."""
    for fd in (1, 2):
        try:
            if os.isatty(fd):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
        except OSError:
            pass
