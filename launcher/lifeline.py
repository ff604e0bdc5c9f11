"""What ties the ranks to the `dpo-launch train` process that supervises them. Shared vocabulary: the launcher
(launcher.run), torchrun's wrapper (launcher.run.torchrun_quiet) and each rank (launcher.worker) use it.

- **Who supervises.** The launcher puts its identity (`pid:start time`, so a reused pid does not pass for it)
  in the job's environment as `DPO_LAUNCH_SUPERVISOR`. A rank or torchrun that finds that process gone knows
  the launcher was lost (kill -9, a crash): it stops on its own instead of training on unsupervised. A pid is
  only meaningful on its own machine, and each node has its own launcher, so this works on every node.
- **Heartbeats.** Each rank keeps `<output_dir>/dpo-launch/heartbeat/rank-N.json` current while it makes
  progress (a step, a micro-batch, an evaluation batch, a save); the launcher's stall watch reads the files of
  its own ranks (same `supervisor`) and stops a job in which one stopped moving (launcher.run.stall).
- **Output that outlives the launcher.** A process whose stdout is the launcher's pipe dies of a
  BrokenPipeError on its next write once the launcher is gone (a progress bar writes every step). Holding
  a read end of that pipe itself (`hold_output_pipes`) means the pipe never breaks; when the launcher is
  lost, `divert_output` points stdout and stderr at the process's log file and copies what was still in
  the pipe there, so the process goes on logging until it has stopped.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

SUPERVISOR_ENV = "DPO_LAUNCH_SUPERVISOR"
POLL_SECONDS = 1.0  # how often a rank checks its launcher; a lost launcher is noticed within about this long
HEARTBEAT_SECONDS = 1.0  # the most often a rank rewrites its heartbeat file

# Heartbeat phases: a rank is watched from "training" on, and no longer once it has left the training loop.
STARTING, TRAINING, DONE = "starting", "training", "done"


def process_identity(pid: int) -> str | None:
    """`pid:start time` (clock ticks since boot, /proc/PID/stat field 22), or None when there is no such process;
    `pid:` alone where /proc is not available."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return f"{pid}:" if _exists(pid) else None
    fields = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return f"{pid}:{fields[19]}" if len(fields) > 19 and fields[0] != "Z" else None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def supervisor_from(env: Mapping[str, str]) -> str | None:
    """The launcher's identity, as the launcher put it in the environment (None when started without it)."""
    return env.get(SUPERVISOR_ENV) or None


def supervisor_alive(identity: str) -> bool:
    pid = int(identity.split(":", 1)[0])
    current = process_identity(pid)
    return current is not None and (current == identity or identity.endswith(":") or current.endswith(":"))


def watch_supervisor(identity: str, on_lost, interval: float = POLL_SECONDS) -> threading.Thread:
    """A daemon thread calling `on_lost()` once when the launcher `identity` is gone."""
    def watch() -> None:
        while supervisor_alive(identity):
            time.sleep(interval)
        on_lost()

    thread = threading.Thread(target=watch, name="dpo-launch-supervisor-watch", daemon=True)
    thread.start()
    return thread


# --- heartbeats ---------------------------------------------------------------------------------------------

@dataclass
class Heartbeat:
    rank: int
    pid: int
    host: str
    supervisor: str | None
    phase: str  # STARTING, TRAINING or DONE
    step: int | None = None
    beat: int = 0  # counts the writes, so a reader sees a change even when step and phase stay
    time: float = 0.0  # time.time() of the write, for people; the stall watch uses its own clock


def write_heartbeat(path: Path, heartbeat: Heartbeat) -> None:
    """Replace the file in one rename (readers see the old beat or the new one); no fsync: a heartbeat that a
    crash loses costs nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(asdict(heartbeat)) + "\n", encoding="utf-8")
    os.replace(temp, path)


def read_heartbeat(path: Path) -> Heartbeat | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Heartbeat(**{key: data[key] for key in Heartbeat.__dataclass_fields__ if key in data})
    except (OSError, ValueError, TypeError):
        return None


def this_host() -> str:
    return socket.gethostname()


# --- stdout and stderr that survive the launcher ------------------------------------------------------------

def hold_output_pipes() -> list[int]:
    """Open a read end of each pipe behind stdout/stderr (Linux: /proc/self/fd/N), so a write never fails with
    EPIPE when the launcher reading the other end dies. Empty when they are not pipes (files, a terminal)."""
    held, seen = [], set()
    for fd in (1, 2):
        try:
            info = os.fstat(fd)
            if not stat.S_ISFIFO(info.st_mode) or info.st_ino in seen:
                continue
            held.append(os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            seen.add(info.st_ino)
        except OSError:
            continue
    return held


def divert_output(log: Path, held: list[int]) -> None:
    """From now on stdout and stderr append to `log`; what was left unread in the held pipes goes there too,
    and a daemon thread keeps copying anything a child process still writes into them."""
    log.parent.mkdir(parents=True, exist_ok=True)
    target = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    for fd in held:
        _drain(fd, target)
    for fd in (1, 2):
        os.dup2(target, fd)
    if held:
        threading.Thread(target=_keep_draining, args=(held, target), name="dpo-launch-drain", daemon=True).start()


def _drain(source: int, target: int) -> None:
    while True:
        try:
            chunk = os.read(source, 65536)
        except BlockingIOError:
            return
        except OSError:
            return
        if not chunk:
            return
        os.write(target, chunk)


def _keep_draining(held: list[int], target: int) -> None:
    while True:
        for fd in held:
            _drain(fd, target)
        time.sleep(0.2)


__all__ = ["DONE", "HEARTBEAT_SECONDS", "Heartbeat", "STARTING", "SUPERVISOR_ENV", "TRAINING", "divert_output",
           "hold_output_pipes", "process_identity", "read_heartbeat", "supervisor_alive", "supervisor_from",
           "this_host", "watch_supervisor", "write_heartbeat"]
