"""The stall watch: a job in which a rank stopped making progress is stopped, not left hanging.

A rank that hangs (a deadlock, a stuck collective, a process stopped with SIGSTOP) makes every other rank
wait in its next collective: no output, no error, until someone notices. Each rank keeps a heartbeat file
current while it makes progress (launcher.lifeline: a step, a micro-batch, an evaluation batch, a save).
The launcher reads the heartbeats of its own ranks with its own clock (so clocks of other machines do not
matter); once a rank has entered training, one that has not moved for `--stall-timeout` seconds is a stall.
Then the launcher names the rank(s) behind it, has every rank dump its Python stack into its log
(faulthandler on SIGUSR1, armed by the worker), and stops the job: exit 5 (launcher.errors.EXIT_STALLED).

Which rank is to blame: in a stall every rank stops moving, the healthy ones waiting for the stuck one, so
the heartbeats alone tie. The process state breaks the tie where it can (stopped, traced, in
uninterruptible I/O or dead), then the least progress; otherwise every still rank is named.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from launcher.layout import HEARTBEAT_DIR, alerts_file, run_dir
from launcher.lifeline import DONE, TRAINING, Heartbeat, read_heartbeat, this_host
from launcher.run.process_tree import descendants, kill, kill_main_thread

DEFAULT_STALL_SECONDS = 30 * 60.0
STALL_RULE = "rank-stalled"
# /proc/PID/stat states that mean the process itself cannot move (proc(5))
STUCK_STATES = {"T": "stopped (SIGSTOP or job control)", "t": "stopped by a debugger",
                "D": "in uninterruptible I/O", "Z": "dead (a zombie)"}
DUMP_WAIT_SECONDS = 5.0


@dataclass
class _Seen:
    heartbeat: Heartbeat
    changed_at: float


@dataclass
class Stall:
    """A stall: the ranks to blame, how long they have been still, one line per rank for the logs."""

    ranks: list[int]
    seconds: float
    step: int
    details: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    def message(self) -> str:
        who = ", ".join(f"rank {rank}" for rank in self.ranks) or "a rank of this node"
        return f"{who} made no training progress for {self.seconds:.0f} s (last step {self.step})"

    def alert(self) -> dict:
        """The record appended to alerts.jsonl, in the shape of launcher.observe.alerts.Alert."""
        return {"rule": STALL_RULE, "severity": "error", "step": self.step, "message": self.message(),
                "hint": "every rank's Python stack is in its log (logs/rank-N.log); the job was stopped",
                "values": {"ranks": self.ranks, "seconds": round(self.seconds, 1)}, "wall_time": time.time()}


class StallWatch:
    """Reads the heartbeats of the ranks whose launcher is `supervisor`; `check()` returns a Stall or None."""

    def __init__(self, output_dir: Path, supervisor: str, timeout: float, local_ranks: int,
                 clock: Callable[[], float] = time.monotonic):
        self.output_dir = Path(output_dir)
        self.supervisor = supervisor
        self.timeout = timeout
        self.local_ranks = local_ranks
        self.clock = clock
        self.seen: dict[int, _Seen] = {}
        self.armed_at: float | None = None

    def check(self) -> Stall | None:
        now = self.clock()
        self._read(now)
        if self.armed_at is None:
            return None
        watched = {rank: seen for rank, seen in self.seen.items() if seen.heartbeat.phase != DONE}
        still = {rank: seen for rank, seen in watched.items()
                 if now - max(seen.changed_at, self.armed_at) > self.timeout}
        missing = self.local_ranks - len(self.seen) if now - self.armed_at > self.timeout else 0
        if not still and missing <= 0:
            return None
        return self._describe(still, missing, now)

    def _read(self, now: float) -> None:
        folder = run_dir(self.output_dir) / HEARTBEAT_DIR
        for path in sorted(folder.glob("rank-*.json")) if folder.is_dir() else []:
            beat = read_heartbeat(path)
            if beat is None or beat.supervisor != self.supervisor:
                continue  # another launch's rank (an earlier run, another node)
            before = self.seen.get(beat.rank)
            if before is None or before.heartbeat.beat != beat.beat or before.heartbeat.phase != beat.phase:
                self.seen[beat.rank] = _Seen(beat, now)
        if self.armed_at is None and any(s.heartbeat.phase == TRAINING for s in self.seen.values()):
            self.armed_at = now

    def _describe(self, still: dict[int, _Seen], missing: int, now: float) -> Stall:
        states = {rank: process_state(seen.heartbeat) for rank, seen in still.items()}
        stuck = [rank for rank, state in states.items() if state in STUCK_STATES]
        steps = {rank: seen.heartbeat.step or 0 for rank, seen in still.items()}
        least = [rank for rank in still if steps[rank] == min(steps.values())] if steps else []
        blamed = sorted(stuck or (least if len(least) < len(still) else list(still)))
        details = [f"rank {rank} (pid {seen.heartbeat.pid} on {seen.heartbeat.host}): last step "
                   f"{seen.heartbeat.step}, still for {now - max(seen.changed_at, self.armed_at or now):.0f} s, "
                   f"{STUCK_STATES.get(states[rank] or '', _state_words(states[rank]))}"
                   for rank, seen in sorted(still.items())]
        if missing > 0:
            details.append(f"{missing} of the {self.local_ranks} ranks on this node never reported")
        seconds = max((now - max(still[rank].changed_at, self.armed_at or now) for rank in blamed),
                      default=now - (self.armed_at or now))
        return Stall(blamed, seconds, min(steps.values(), default=0), details, self._dumpable())

    def _dumpable(self) -> list[int]:
        """Pids of our ranks on this machine that are still our descendants (never signal a stranger)."""
        ours = set(descendants(os.getpid()))
        return sorted(seen.heartbeat.pid for seen in self.seen.values()
                      if seen.heartbeat.host == this_host() and seen.heartbeat.pid in ours)


def process_state(heartbeat: Heartbeat) -> str | None:
    """The /proc state letter of the rank's process (None when it is on another machine or gone)."""
    if heartbeat.host != this_host():
        return None
    try:
        stat = Path(f"/proc/{heartbeat.pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def _state_words(state: str | None) -> str:
    if state is None:
        return "state unknown"
    return "running" if state == "R" else "waiting" if state == "S" else f"state {state}"


def dump_stacks(pids: list[int], logs: Path, wait: float = DUMP_WAIT_SECONDS) -> None:
    """SIGUSR1 makes each rank write every thread's Python stack into its log (faulthandler); SIGCONT lets a
    stopped one do it. SIGUSR1 goes to the main thread alone: the training loop is interrupted where it
    stands, and its frames are not walked while it runs on. Waits until the rank logs stop growing, at most
    `wait` seconds."""
    for pid in pids:
        kill_main_thread(pid, signal.SIGUSR1)
        kill(pid, signal.SIGCONT)
    deadline, sizes = time.monotonic() + wait, None
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _log_sizes(logs)
        if now == sizes:
            return
        sizes = now


def _log_sizes(logs: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in logs.glob("rank-*.log") if path.is_file()}


def record_stall(output_dir: Path, stall: Stall) -> None:
    """Append the stall to alerts.jsonl, as the health alerts are (never fatal: the job is stopped anyway)."""
    try:
        path = alerts_file(output_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(stall.alert()) + "\n")
    except OSError:
        pass


__all__ = ["DEFAULT_STALL_SECONDS", "Stall", "StallWatch", "dump_stacks", "record_stall"]
