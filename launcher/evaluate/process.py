"""Start evaluation workers and see them to the end: `python -m launcher.evaluate.worker TASK --args-file F`.

Each job gets a folder holding its request (written atomically before the start), its `worker.log` (the worker's
own output, so several workers never interleave on the terminal) and its `result.json`. The workers run in
sessions of their own, so the launcher decides what reaches them: Ctrl-C and SIGTERM are forwarded to every
worker, which ends its current chunk's write cleanly and exits 130/143; a second signal kills them. If one worker
fails, the others are stopped. A worker whose launcher died stops by itself (it watches its parent).

Outcomes: the results in job order; a worker's user-facing error (`{"ok": false, "error": ...}`, exit 1) becomes
a UserError; an interrupted worker a KeyboardInterrupt; anything else a WorkerCrashed with the log's tail (our bug:
the CLI writes a crash log, exit 3).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from launcher import PACKAGE_ROOT
from launcher.atomic import write_text_atomic
from launcher.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_ERROR, UserError

WORKER_MODULE = "launcher.evaluate.worker"
GRACE_SECONDS = 30.0  # after a forwarded signal, time for the workers to finish the chunk they are writing


class WorkerCrashed(RuntimeError):
    """A worker ended in a way that is our bug (a traceback in its log)."""


@dataclass
class WorkerJob:
    """One worker: the task, its request, the folder for request/result/log, and environment additions."""

    task: str
    request: dict
    folder: Path
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.folder / "worker.log"

    @property
    def result_file(self) -> Path:
        return self.folder / "result.json"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", WORKER_MODULE, self.task, "--args-file", str(self.folder / "request.json"),
                "--parent-pid", str(os.getpid())]


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment, this checkout first on PYTHONPATH, one OpenMP thread per process on CPU
    (docs/upstream-notes.md#cpu-threads) unless the caller chose."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(PACKAGE_ROOT), env.get("PYTHONPATH"))))
    env.update(extra or {})
    return env


def run_worker(job: WorkerJob, tick: Callable[[], None] | None = None) -> dict:
    """One worker to the end; its result."""
    return run_workers([job], tick)[0]


def run_workers(jobs: list[WorkerJob], tick: Callable[[], None] | None = None, interval: float = 0.5) -> list[dict]:
    """Start every job at once, call `tick()` every `interval` seconds while they run (progress), and return
    their results in job order."""
    for job in jobs:
        job.folder.mkdir(parents=True, exist_ok=True)
        job.result_file.unlink(missing_ok=True)  # never read a previous attempt's result
        write_text_atomic(job.folder / "request.json", json.dumps(job.request, indent=2, ensure_ascii=False) + "\n")
    with _Supervisor() as supervisor:
        for job in jobs:
            supervisor.start(job)
        codes = supervisor.wait(tick, interval)
    if tick is not None:
        tick()
    if supervisor.signalled is not None:
        raise KeyboardInterrupt
    first = supervisor.first_failure
    order = [first] + [i for i in range(len(jobs)) if i != first] if first is not None else range(len(jobs))
    results = {i: _outcome(jobs[i], codes[i]) for i in order}  # the worker that failed first explains the end
    return [results[i] for i in range(len(jobs))]


class _Supervisor:
    """The running workers, with SIGINT/SIGTERM forwarded to them while it is active."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.signalled: int | None = None
        self.first_failure: int | None = None  # index of the worker whose failure stopped the others
        self.deadline: float | None = None
        self.previous: dict = {}

    def __enter__(self) -> _Supervisor:
        self.previous = {sig: signal.signal(sig, self._forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:  # whatever happened, nothing outlives the supervisor
            if process.poll() is None:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def start(self, job: WorkerJob) -> None:
        with open(job.log, "ab") as log:
            self.processes.append(subprocess.Popen(job.argv(), env=worker_env(job.env), stdin=subprocess.DEVNULL,
                                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        if self.signalled is not None:  # the signal came while the workers were starting
            _signal_group(self.processes[-1], self.signalled)

    def wait(self, tick: Callable[[], None] | None, interval: float) -> list[int]:
        while any(p.poll() is None for p in self.processes):
            if tick is not None:
                tick()
            failed = [i for i, p in enumerate(self.processes) if p.poll() not in (None, 0)]
            if failed and self.first_failure is None and self.signalled is None:
                self.first_failure = failed[0]  # the others' work would be thrown away anyway: stop them
                self._stop_all(signal.SIGTERM)
            if self.deadline is not None and time.monotonic() > self.deadline:
                self._stop_all(signal.SIGKILL)
            time.sleep(interval)
        return [p.returncode for p in self.processes]

    def _forward(self, signum, _frame) -> None:
        if self.signalled is not None:  # a second Ctrl-C: stop now
            self._stop_all(signal.SIGKILL)
            return
        self.signalled = signum
        self._stop_all(signum)

    def _stop_all(self, signum: int) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + GRACE_SECONDS
        for process in self.processes:
            if process.poll() is None:
                _signal_group(process, signum)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _outcome(job: WorkerJob, code: int) -> dict:
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED, -signal.SIGINT, -signal.SIGTERM):
        raise KeyboardInterrupt
    result = _read_result(job.result_file)
    if code == 0 and result is not None and result.get("ok"):
        return result
    if code == EXIT_USER_ERROR and result is not None and "error" in result:
        raise UserError(result["error"])
    tail = job.log.read_text(encoding="utf-8", errors="replace")[-3000:] if job.log.exists() else ""
    raise WorkerCrashed(f"the {job.task} worker exited with {code}; its log is {job.log}:\n{tail}")


def _read_result(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
