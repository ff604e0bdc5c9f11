"""A rank's side of being supervised (launcher.lifeline): it notices a lost launcher, keeps a heartbeat for the
stall watch and can dump its stack on request.

Only when started by `dpo-launch train` (`DPO_LAUNCH_SUPERVISOR` set); a worker run by hand does none of this.

- **Lost launcher.** A thread checks every second that the launcher still lives. When it is gone (kill -9, a
  crash), stdout and stderr go on into `logs/rank-N.log` (nothing dies of a broken pipe), `status.json` says
  `launcher-lost`, and the rank sends itself SIGHUP: in the training loop every rank then saves a checkpoint
  at the same step and stops (launcher.worker.graceful_stop), before it the rank stops at once. Exit 129.
- **Heartbeat.** `<output_dir>/dpo-launch/heartbeat/rank-N.json`, rewritten at most once a second while the
  rank makes progress (launcher.run.stall reads it).
- **Stack dump.** SIGUSR1 writes every thread's Python stack into `logs/rank-N.log` (faulthandler), which the
  stall watch asks for before it stops a stalled job.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO

from launcher.errors import EXIT_HANGUP
from launcher.layout import heartbeat_file, logs_dir
from launcher.lifeline import (
    DONE,
    HEARTBEAT_SECONDS,
    STARTING,
    TRAINING,
    Heartbeat,
    divert_output,
    hold_output_pipes,
    supervisor_alive,
    supervisor_from,
    this_host,
    watch_supervisor,
    write_heartbeat,
)
from launcher.run_status import LAUNCHER_LOST, RunStatus, read_status, write_status
from launcher.worker import console


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


class Lifeline:
    """Set up at the worker's start with `start()`; `lost` tells whether the launcher was lost."""

    def __init__(self, env=os.environ):
        self.supervisor = supervisor_from(env)
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        self.held = hold_output_pipes() if self.supervisor else []  # first: before anything writes
        self.output_dir: Path | None = None
        self.lost = False
        self._lost_lock = threading.Lock()
        self.heartbeats: Heartbeats | None = None
        self._dump_file: IO[str] | None = None

    def start(self, output_dir: str | None) -> None:
        if not self.supervisor or not output_dir:
            return
        self.output_dir = Path(output_dir).absolute()
        self.heartbeats = Heartbeats(self.output_dir, self.supervisor)
        self.heartbeats.beat(STARTING, None, force=True)
        self._arm_stack_dump()
        watch_supervisor(self.supervisor, self._on_lost)

    @property
    def rank_log(self) -> Path:
        assert self.output_dir is not None, "start() set it"
        return logs_dir(self.output_dir) / f"rank-{rank()}.log"

    def _arm_stack_dump(self) -> None:
        try:
            self.rank_log.parent.mkdir(parents=True, exist_ok=True)
            self._dump_file = open(self.rank_log, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
            faulthandler.register(signal.SIGUSR1, file=self._dump_file, all_threads=True)
        except (OSError, RuntimeError, ValueError):
            self._dump_file = None

    def _on_lost(self) -> None:
        """From the watch thread: take note, then stop like on SIGHUP (the main thread's handler in
        launcher.worker.graceful_stop takes it from there)."""
        if self._take_note():
            os.kill(os.getpid(), signal.SIGHUP)

    def confirm_lost(self) -> bool:
        """When the rank stops: whether its launcher is gone, even if another rank noticed first (the stop then
        reached this rank through the all-reduce, before its own watch looked)."""
        if self.supervisor and self.output_dir is not None and not supervisor_alive(self.supervisor):
            self._take_note()
        return self.lost

    def _take_note(self) -> bool:
        """Output into the rank's log, a line saying why, the status; True the first time only."""
        with self._lost_lock:
            if self.lost:
                return False
            self.lost = True
        console.detach()  # no launcher reads the marks any more
        try:
            divert_output(self.rank_log, self.held)
        except OSError:
            pass
        pid = (self.supervisor or "").split(":", 1)[0]
        print(f"dpo-launch worker: the launcher (pid {pid}) is gone; rank {rank()} stops (with a checkpoint when "
              "it is training)", file=sys.stderr, flush=True)
        self.record(f"the launcher (pid {pid} on {this_host()}) died; the ranks stopped on their own")
        return True

    def record(self, detail: str, checkpoint: str | None = None) -> None:
        """status.json: launcher-lost (local rank 0 of each node writes it; the launcher cannot any more)."""
        if self.local_rank != 0 or self.output_dir is None:
            return
        status = read_status(self.output_dir) or RunStatus(state=LAUNCHER_LOST)
        status.state, status.detail = LAUNCHER_LOST, detail
        status.exit_code, status.ended_at = EXIT_HANGUP, time.time()
        if checkpoint:
            status.extra = {**status.extra, "checkpoint": checkpoint}
        try:
            write_status(self.output_dir, status)
        except OSError:
            pass


class Heartbeats:
    """Writes this rank's heartbeat file; the TrainerCallback around it is `make_callback`."""

    def __init__(self, output_dir: Path, supervisor: str):
        self.path = heartbeat_file(output_dir, rank())
        self.heartbeat = Heartbeat(rank(), os.getpid(), this_host(), supervisor, STARTING)
        self.last = 0.0

    def beat(self, phase: str, step: int | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and phase == self.heartbeat.phase and now - self.last < HEARTBEAT_SECONDS:
            return
        self.last = now
        self.heartbeat.phase, self.heartbeat.step = phase, step
        self.heartbeat.beat += 1
        self.heartbeat.time = time.time()
        try:
            write_heartbeat(self.path, self.heartbeat)
        except OSError:  # a full disk must not stop training; the stall watch then sees no progress
            pass


class HeartbeatOnProgress:
    """The callback's logic, free of transformers: a beat at every sign of progress."""

    def __init__(self, heartbeats: Heartbeats):
        self.heartbeats = heartbeats

    def _beat(self, state, control, phase: str = TRAINING, force: bool = False):
        self.heartbeats.beat(phase, state.global_step, force)
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        return self._beat(state, control, force=True)

    def on_train_end(self, args, state, control, **kwargs):
        return self._beat(state, control, DONE, force=True)

    def on_step_begin(self, args, state, control, **kwargs):
        return self._beat(state, control)

    on_substep_end = on_step_end = on_prediction_step = on_evaluate = on_save = on_log = on_step_begin


def make_callback(lifeline: Lifeline) -> list:
    """The heartbeat TrainerCallback for `run_exp(callbacks=...)` (none when not supervised)."""
    if lifeline.heartbeats is None:
        return []
    from transformers import TrainerCallback

    callback_class = type("DpoLaunchHeartbeat", (HeartbeatOnProgress, TrainerCallback), {})
    return [callback_class(lifeline.heartbeats)]
