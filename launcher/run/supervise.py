"""Run a LaunchSpec to the end and leave nothing behind.

The job runs without a shell in its own session, so the launcher decides what reaches it: Ctrl-C and SIGTERM
are forwarded to the job's process group (torchrun passes them on to every rank), a second signal or the
end of the grace period escalates to SIGKILL for every descendant. The launcher makes itself the
"child subreaper" (Linux) so ranks orphaned by a dead torchrun are re-parented to it and swept at the end.

Output is streamed to the terminal and teed to `logs/launcher.log`; lines torchrun prefixes with
`[rankN]: ` are also split into `logs/rank-N.log`. When torchrun reports a failed rank, the launcher says
which one and where its log is; when an alert named in --stop-on ended the run (exit 4, from every rank), it
says which alert at which step and where the checkpoint is.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

from launcher.errors import EXIT_ALERT_STOP, EXIT_INTERRUPTED, EXIT_TERMINATED
from launcher.observe.run_end import describe_alert_stop, read_alerts, stopping_alert
from launcher.plan.launch import GRACE_SECONDS, LaunchSpec
from launcher.run.process_tree import (
    become_subreaper,
    descendants,
    kill,
    reap_orphans,
    signal_group,
)

RANK_LINE = re.compile(rb"^\[rank(\d+)\]: ?")
FAILED_RANK = re.compile(r"^\s*rank\s*:\s*(\d+) \(local_rank: (\d+)\)")
FAILED_EXITCODE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")
FAILED_HOST = re.compile(r"^\s*host\s*:\s*(\S+)")


@dataclass
class Failure:
    """torchrun's root cause: the first rank that failed."""

    rank: int
    local_rank: int
    exitcode: int | None = None
    host: str | None = None


@dataclass
class _Outcome:
    interrupted_by: int | None = None
    failure: Failure | None = None
    escalated: bool = False
    deadline: float | None = None
    seen_root_cause: bool = False
    pending: dict = field(default_factory=dict)
    grace: float = GRACE_SECONDS
    proc: subprocess.Popen | None = None


def supervise(spec: LaunchSpec, logs_dir: Path, grace: float = GRACE_SECONDS, cwd: Path | None = None,
              output_dir: Path | None = None) -> int:
    """Run the job; return its exit code (130 after Ctrl-C, 143 after SIGTERM, 128+N if killed by signal N, 4 when
    a --stop-on alert ended it: its closing message then names the alert, read from `output_dir`'s alerts.jsonl).

    Signal handlers go in before the job starts and the logs are open before it starts, so no failure in
    between can leave a job running unsupervised. Meant for the `dpo-launch` process: at the end it kills
    every process descended from the caller.
    """
    logs_dir.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    outcome = _Outcome(grace=grace)
    with _Tee(logs_dir, spec.distributed) as tee, _Forwarding(outcome):
        outcome.proc = subprocess.Popen(spec.argv, env=spec.env, cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        if outcome.interrupted_by is not None:  # the signal came while the job was starting
            signal_group(outcome.proc.pid, outcome.interrupted_by)
        reader = threading.Thread(target=_pump, args=(outcome.proc.stdout, tee, outcome), daemon=True)
        reader.start()
        try:
            returncode = _wait(outcome)
        finally:
            _sweep(outcome.proc)
        reader.join(timeout=5)
        code = _exit_code(returncode, outcome)
        tee.say(_closing_message(code, outcome, logs_dir, spec.distributed, output_dir))
    return code


def _wait(outcome: _Outcome) -> int:
    while True:
        try:
            return outcome.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if outcome.deadline is not None and time.monotonic() > outcome.deadline and not outcome.escalated:
                _escalate(outcome)


class _Forwarding:
    """While active, SIGINT/SIGTERM go to the job's process group (torchrun passes them on to every rank);
    a second signal escalates to SIGKILL at once."""

    def __init__(self, outcome: _Outcome):
        self.outcome = outcome
        self.previous: dict = {}

    def __enter__(self) -> Self:
        self.previous = {sig: signal.signal(sig, self.forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def forward(self, signum, _frame) -> None:
        outcome = self.outcome
        if outcome.interrupted_by is not None:
            _escalate(outcome)
            return
        outcome.interrupted_by = signum
        outcome.deadline = time.monotonic() + outcome.grace
        if outcome.proc is not None:
            signal_group(outcome.proc.pid, signum)


def _escalate(outcome: _Outcome) -> None:
    outcome.escalated = True
    for pid in descendants(os.getpid()):
        kill(pid, signal.SIGKILL)
    if outcome.proc is not None:
        signal_group(outcome.proc.pid, signal.SIGKILL)


def _sweep(proc: subprocess.Popen) -> None:
    """Kill whatever the job left behind (its group, orphaned ranks re-parented to us) and reap it."""
    if proc.poll() is None:
        signal_group(proc.pid, signal.SIGKILL)
    for pid in descendants(os.getpid()):
        kill(pid, signal.SIGKILL)
    signal_group(proc.pid, signal.SIGKILL)
    proc.wait()
    reap_orphans()


class _Tee:
    """The job's output to the terminal, logs/launcher.log and (per rank) logs/rank-N.log."""

    def __init__(self, logs_dir: Path, distributed: bool):
        self.logs_dir = logs_dir
        self.distributed = distributed
        self.rank_logs: dict[int, IO[bytes]] = {}
        self.logging = True

    def __enter__(self) -> Self:
        # unbuffered, so what a killed launcher received is on disk; open for the whole run
        self.launcher_log = open(self.logs_dir / "launcher.log", "ab", buffering=0)
        return self

    def __exit__(self, *exc) -> None:
        for handle in [self.launcher_log, *self.rank_logs.values()]:
            handle.close()

    def line(self, raw: bytes) -> None:
        _write_out(sys.stdout, raw)
        if self.logging:
            self._log(raw)

    def _log(self, raw: bytes) -> None:
        """Into the log files; a full disk stops the logging, never the job (the terminal still gets it all)."""
        try:
            self.launcher_log.write(raw)
            match = RANK_LINE.match(raw)
            if match or not self.distributed:
                rank = int(match.group(1)) if match else 0
                self.rank_log(rank).write(raw[match.end():] if match else raw)
        except OSError as exc:
            self.logging = False
            print(f"dpo-launch: cannot write the logs in {self.logs_dir} ({exc.strerror or exc}); the output "
                  "continues on the terminal only", file=sys.stderr, flush=True)

    def rank_log(self, rank: int) -> IO[bytes]:
        if rank not in self.rank_logs:
            self.rank_logs[rank] = open(self.logs_dir / f"rank-{rank}.log", "ab", buffering=0)  # noqa: SIM115
        return self.rank_logs[rank]

    def say(self, message: str | None) -> None:
        if message:
            print(message, file=sys.stderr, flush=True)
            if self.logging:
                try:
                    self.launcher_log.write((message + "\n").encode())
                except OSError:
                    pass


def _write_out(stream, raw: bytes) -> None:
    """As text, not to `stream.buffer`: a live metrics view (launcher.observe.run_state) redirects sys.stdout and
    scrolls text written to it above the view."""
    try:
        stream.write(raw.decode("utf-8", "replace"))
        stream.flush()
    except (BrokenPipeError, ValueError):  # a closed terminal must not stop the supervision
        pass


def _pump(pipe: IO[bytes], tee: _Tee, outcome: _Outcome) -> None:
    for raw in iter(pipe.readline, b""):
        tee.line(raw)
        _parse_failure(raw.decode("utf-8", "replace"), outcome)
    pipe.close()


def _parse_failure(text: str, outcome: _Outcome) -> None:
    """Pick the root cause out of torchrun's ChildFailedError summary (rank, local rank, host, exit code);
    torchrun prints it itself, so the lines carry no rank prefix."""
    if "Root Cause (first observed failure)" in text:
        outcome.seen_root_cause, outcome.pending = True, {}
    elif not outcome.seen_root_cause or outcome.failure is not None:
        return
    elif match := FAILED_HOST.match(text):
        outcome.pending["host"] = match.group(1)
    elif match := FAILED_RANK.match(text):
        outcome.pending.update(rank=int(match.group(1)), local_rank=int(match.group(2)))
    elif (match := FAILED_EXITCODE.match(text)) and "rank" in outcome.pending:
        outcome.failure = Failure(exitcode=int(match.group(1)), **outcome.pending)


def _exit_code(returncode: int, outcome: _Outcome) -> int:
    if outcome.interrupted_by == signal.SIGINT:
        return EXIT_INTERRUPTED
    if outcome.interrupted_by == signal.SIGTERM:
        return EXIT_TERMINATED
    if returncode > 0 and outcome.failure is not None and outcome.failure.exitcode == EXIT_ALERT_STOP:
        return EXIT_ALERT_STOP  # torchrun exits 1 for any failed rank; the ranks said why
    return 128 - returncode if returncode < 0 else returncode


def _closing_message(code: int, outcome: _Outcome, logs_dir: Path, distributed: bool,
                     output_dir: Path | None = None) -> str | None:
    if outcome.interrupted_by is not None:
        name = signal.Signals(outcome.interrupted_by).name
        how = "killed after the grace period" if outcome.escalated else "stopped"
        return f"dpo-launch: interrupted by {name}; training {how}; logs in {logs_dir}"
    if code == 0:
        return None
    if code == EXIT_ALERT_STOP:
        return _alert_stop_message(output_dir, logs_dir)
    failure = outcome.failure
    if failure is not None:
        where = f" on host {failure.host}" if failure.host else ""
        return (f"dpo-launch: rank {failure.rank} failed ({_describe_exit(failure.exitcode)}){where}; "
                f"the other ranks were stopped; its log: {logs_dir / f'rank-{failure.rank}.log'}")
    log = logs_dir / ("launcher.log" if distributed else "rank-0.log")
    return f"dpo-launch: training failed ({_describe_exit(code)}); log: {log}"


def _alert_stop_message(output_dir: Path | None, logs_dir: Path) -> str:
    alert = stopping_alert(read_alerts(output_dir)) if output_dir is not None else None
    saved = output_dir / f"checkpoint-{alert.get('step')}" if output_dir is not None and alert is not None else None
    checkpoint = f"; every rank saved {saved}" if saved is not None and saved.is_dir() else ""
    return (f"dpo-launch: training {describe_alert_stop(alert)} (--stop-on; exit {EXIT_ALERT_STOP}){checkpoint}; "
            f"logs in {logs_dir}")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        try:
            return f"exit code {code}, killed by {signal.Signals(number).name}"
        except ValueError:
            pass
    return f"exit code {code}"
