"""Run a LaunchSpec to the end and leave nothing behind.

The job runs without a shell in its own session, so the launcher decides what reaches it: Ctrl-C, SIGTERM and
SIGHUP (a closed terminal or SSH session) are forwarded to the job's process group (torchrun passes them on to
every rank, which saves a checkpoint and stops); a second signal or the end of the grace period escalates to
SIGKILL for every descendant. A launcher started with SIGHUP ignored (`nohup`) leaves it ignored. The launcher
makes itself the "child subreaper" (Linux) so ranks orphaned by a dead torchrun are re-parented to it and swept
at the end.

The job's environment names the launcher (launcher.lifeline), so ranks whose launcher dies without warning
stop on their own; a stall watch (launcher.run.stall) stops a job in which a rank stopped moving.

Output is teed to `logs/launcher.log` and `logs/rank-N.log` and, the lines meant for it (or all of them with
`--verbose`), to the terminal (launcher.run.tee). When torchrun reports a failed rank, the launcher says which
one and where its log is; when an alert named in --stop-on ended the run (exit 4, from every rank), it says
which alert at which step and where the checkpoint is.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

from launcher.errors import EXIT_ALERT_STOP, EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_STALLED, EXIT_TERMINATED
from launcher.lifeline import SUPERVISOR_ENV, process_identity
from launcher.observe.run_end import describe_alert_stop, read_alerts, stopping_alert
from launcher.plan.launch import GRACE_SECONDS, LaunchSpec
from launcher.run.process_tree import (
    become_subreaper,
    descendants,
    kill,
    reap_orphans,
    signal_group,
)
from launcher.run.stall import Stall, StallWatch, dump_stacks, record_stall
from launcher.run.tee import Tee, detach_from_terminal, write_out

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SIGNAL_EXIT: dict[int, int] = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED,
                               signal.SIGHUP: EXIT_HANGUP}
FAILED_RANK = re.compile(r"^\s*rank\s*:\s*(\d+) \(local_rank: (\d+)\)")
FAILED_EXITCODE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")
FAILED_HOST = re.compile(r"^\s*host\s*:\s*(\S+)")


def launcher_identity() -> str:
    """This process as its ranks know it (launcher.lifeline.SUPERVISOR_ENV)."""
    return process_identity(os.getpid()) or f"{os.getpid()}:"


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
    stalled: Stall | None = None
    escalated: bool = False
    deadline: float | None = None
    seen_root_cause: bool = False
    pending: dict = field(default_factory=dict)
    grace: float = GRACE_SECONDS
    proc: subprocess.Popen | None = None


@dataclass(frozen=True)
class JobEnd:
    """How the job ended: the exit code `train` passes on, and the launcher's closing line (None when all went well)."""

    code: int
    message: str | None = None


def supervise(spec: LaunchSpec, logs_dir: Path, grace: float = GRACE_SECONDS, cwd: Path | None = None, *,
              keep_fds: tuple[int, ...] = (), stall: StallWatch | None = None,
              output_dir: Path | None = None, verbose: bool = False,
              job_ended: Callable[[], None] | None = None) -> JobEnd:
    """Run the job to its end: exit code 130/143/129 after SIGINT/SIGTERM/SIGHUP, 5 after a stall, 128+N if
    killed by signal N, 4 when a --stop-on alert ended it (its closing message then names the alert, read from
    `output_dir`'s alerts.jsonl), else the job's own.

    Signal handlers go in before the job starts and the logs are open before it starts, so no failure in
    between can leave a job running unsupervised. `keep_fds` are passed to the job (the run's lock, so it
    stays held while any of the job lives). `verbose` shows every line of the job's output on the terminal, not
    only the ones meant for it. `job_ended` is called once the job is gone, before the closing message (the
    console's last step lines come first). Meant for the `dpo-launch` process: at the end it kills every
    process descended from the caller.
    """
    logs_dir.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    outcome = _Outcome(grace=grace)
    env = {**spec.env, SUPERVISOR_ENV: launcher_identity()}
    with Tee(logs_dir, spec.distributed, verbose) as tee, _Forwarding(outcome):
        outcome.proc = subprocess.Popen(spec.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, pass_fds=keep_fds,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        if outcome.interrupted_by is not None:  # the signal came while the job was starting
            signal_group(outcome.proc.pid, outcome.interrupted_by)
        reader = threading.Thread(target=_pump, args=(outcome.proc.stdout, tee, outcome), daemon=True)
        reader.start()
        try:
            returncode = _wait(outcome, stall, tee, logs_dir)
        finally:
            _sweep(outcome.proc)
        reader.join(timeout=5)
        if job_ended is not None:
            job_ended()
        code = _exit_code(returncode, outcome)
        message = _closing_message(code, outcome, logs_dir, spec.distributed, output_dir)
        _show_last_words(code, outcome, tee, spec.distributed)
        tee.say(message)
    return JobEnd(code, message)


def _wait(outcome: _Outcome, stall: StallWatch | None, tee: Tee, logs_dir: Path) -> int:
    assert outcome.proc is not None, "the job was started"
    while True:
        try:
            return outcome.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if outcome.deadline is not None and time.monotonic() > outcome.deadline and not outcome.escalated:
                _escalate(outcome)
            elif stall is not None and outcome.interrupted_by is None and outcome.stalled is None:
                stalled = stall.check()
                if stalled is not None:
                    _stop_stalled(outcome, stalled, stall, tee, logs_dir)


def _stop_stalled(outcome: _Outcome, stalled: Stall, stall: StallWatch, tee: Tee, logs_dir: Path) -> None:
    """Say which rank stalled, have every rank dump its stack into its log, then kill the job (a stalled job
    cannot save a checkpoint: the healthy ranks wait in a collective for the stuck one)."""
    outcome.stalled = stalled
    tee.say(f"dpo-launch: error[rank-stalled] step {stalled.step}: {stalled.message()}; dumping every rank's "
            f"Python stack into its log and stopping the job")
    for line in stalled.details:
        tee.say(f"dpo-launch:   {line}")
    record_stall(stall.output_dir, stalled)
    dump_stacks(stalled.pids, logs_dir)
    _escalate(outcome)


class _Forwarding:
    """While active, SIGINT/SIGTERM/SIGHUP go to the job's process group (torchrun passes them on to every
    rank); a second signal escalates to SIGKILL at once. SIGHUP ignored on entry (nohup) stays ignored."""

    def __init__(self, outcome: _Outcome):
        self.outcome = outcome
        self.previous: dict = {}

    def __enter__(self) -> Self:
        for sig in FORWARDED:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self.previous[sig] = signal.signal(sig, self.forward)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def forward(self, signum, _frame) -> None:
        outcome = self.outcome
        if signum == signal.SIGHUP:
            detach_from_terminal()
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


def _pump(pipe: IO[bytes], tee: Tee, outcome: _Outcome) -> None:
    for raw in iter(pipe.readline, b""):
        tee.line(raw)
        _parse_failure(raw.decode("utf-8", "replace"), outcome)
    tee.end_of_output()
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
    if outcome.interrupted_by is not None:
        return SIGNAL_EXIT[outcome.interrupted_by]
    if outcome.stalled is not None:
        return EXIT_STALLED
    if returncode > 0 and outcome.failure is not None and outcome.failure.exitcode == EXIT_ALERT_STOP:
        return EXIT_ALERT_STOP  # torchrun exits 1 for any failed rank; the ranks said why
    return 128 - returncode if returncode < 0 else returncode


def _closing_message(code: int, outcome: _Outcome, logs_dir: Path, distributed: bool,
                     output_dir: Path | None = None) -> str | None:
    if outcome.interrupted_by is not None:
        name = signal.Signals(outcome.interrupted_by).name
        how = "killed after the grace period" if outcome.escalated else "stopped"
        return f"dpo-launch: interrupted by {name}; training {how}; logs in {logs_dir}"
    if outcome.stalled is not None:
        return (f"dpo-launch: stalled: {outcome.stalled.message()}; every rank's Python stack is in its log; the job "
                f"was stopped (exit {EXIT_STALLED}); logs in {logs_dir}")
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


def _show_last_words(code: int, outcome: _Outcome, tee: Tee, distributed: bool) -> None:
    """A failed rank whose last lines the console did not show (it died outside the worker's handler, which
    always ends with a line for the console): those lines, so the cause is on the screen, not only in its log."""
    if code in (0, EXIT_ALERT_STOP) or outcome.interrupted_by is not None or outcome.stalled is not None:
        return
    rank = outcome.failure.rank if outcome.failure is not None else None if distributed else 0
    lines = tee.last_unshown(rank) if rank is not None else []
    if lines:
        write_out(sys.stderr, f"dpo-launch: the last lines rank {rank} printed (the whole output is in its log):\n"
                  + "".join(f"  {line}\n" for line in lines))


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
