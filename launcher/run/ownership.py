"""One run per output_dir: the launcher that writes a run directory holds `<output_dir>/dpo-launch/lock` for the
run's whole life, and a second `dpo-launch train` on the same output_dir is refused, naming the holder.

The lock is `flock(2)` on that file, so the kernel releases it when the holder dies, however it dies: there is no
stale lock to clean up. The launcher passes the locked descriptor to its job too (launcher.run.supervise), so
when the launcher is killed the lock stays held until the last process of the job has stopped. The file
itself stays (removing it would let two launchers lock two different files); it holds the holder's pid, host,
start time and, for a multi-node launch, which job and node it is, for the refusal message.

Multi-node runs: every node runs `dpo-launch train` with the same `output_dir`. Where the nodes share a file
system, the first launcher of the job to lock it writes the run directory (guard, `--overwrite`, manifest,
status, history); a launcher that finds the lock held by another node of the *same* job (same rendezvous: master
address and port, or rendezvous id and endpoint, and node count) joins it instead, writing nothing but its own
logs. Where they do not share one, each node locks and writes its own copy, as before.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from launcher.layout import lock_file
from launcher.lifeline import process_identity, this_host
from launcher.plan.topology import Topology
from launcher.run.rundir import RunDirRefused

HOLDER_READ_SECONDS = 3.0  # how long to wait for a new holder to write who it is
PROBE_WAIT = 0.5  # how long a held lock is retried before it counts as held (see _lock_exclusive)


@dataclass
class Holder:
    pid: int
    host: str
    started_at: float
    job: str | None = None  # the multi-node job this launcher belongs to (None: a single-node run)
    node_rank: int | None = None

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"pid {self.pid} on host {self.host}, started {started}"


@dataclass
class Ownership:
    """This launcher's part in the run: `writer` (holds the lock, writes the run dir) or a joining node."""

    writer: bool
    fd: int | None = None
    holder: Holder | None = None  # the writer this launcher joined
    previous: bytes = b""  # what the lock file said before this launcher took it

    def restore_lock_file(self) -> None:
        """A launch refused before it started: the lock file says again what it said before (no trace)."""
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, self.previous, 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


def job_key(topology: Topology) -> str | None:
    """What the nodes of one multi-node job have in common (None for a single node: nothing to join)."""
    if topology.elastic:
        endpoint = topology.rdzv_endpoint or f"{topology.master_addr}:{topology.master_port}"
        return f"{topology.rdzv_backend}:{topology.rdzv_id}@{endpoint}/{topology.nnodes}"
    if topology.nnodes > 1:
        return f"{topology.master_addr}:{topology.master_port}/{topology.nnodes}"
    return None


def take_ownership(output_dir: Path, topology: Topology) -> Ownership:
    """Lock the run for this launcher, or join the node holding it for the same job; RunDirRefused when another
    launcher owns it."""
    path = lock_file(output_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirRefused(f"cannot create {path.parent}: {exc.strerror or exc}; nothing was started") from None
    me = _me(topology)
    while True:
        fd = _open(path)
        if not _lock_exclusive(fd):
            holder = _read_holder(fd)
            os.close(fd)
            return _join_or_refuse(output_dir, me, holder)
        if _same_file(fd, path):
            break
        os.close(fd)  # the file was replaced while we waited for it: lock the new one
    previous = os.pread(fd, 1 << 16, 0)
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(asdict(me)) + "\n").encode(), 0)
    return Ownership(writer=True, fd=fd, previous=previous)


def _lock_exclusive(fd: int) -> bool:
    """The exclusive lock, tried for PROBE_WAIT seconds: `plan`'s probe (lock_refusal) holds a shared lock for an
    instant, and a launch at that instant must not take it for another launcher's."""
    deadline = time.monotonic() + PROBE_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def lock_refusal(output_dir: Path, topology: Topology) -> str | None:
    """Why `take_ownership` would refuse the run now (another launcher holds it), None when it would not; takes
    nothing and creates nothing (for `plan`). It probes the lock with a shared, non-blocking flock that it drops at
    once (take_ownership waits that long before it takes the lock for held)."""
    try:
        fd = os.open(lock_file(output_dir), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file, or none readable: take_ownership creates or reports it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it (closing the descriptor drops the probe)
        except BlockingIOError:
            holder = _read_holder(fd)
    finally:
        os.close(fd)
    try:
        _join_or_refuse(output_dir, _me(topology), holder)
    except RunDirRefused as exc:
        return str(exc)
    return None


def _me(topology: Topology) -> Holder:
    return Holder(os.getpid(), this_host(), time.time(), job_key(topology),
                  None if topology.elastic else topology.node_rank)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunDirRefused(f"cannot open the run's lock {path}: {exc.strerror or exc}; nothing was started") from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> Holder | None:
    """Who holds the lock; a holder that has just locked may not have written it yet, so wait a moment."""
    deadline = time.monotonic() + HOLDER_READ_SECONDS
    while True:
        try:
            data = json.loads(os.pread(fd, 4096, 0))
            return Holder(**{key: data[key] for key in Holder.__dataclass_fields__ if key in data})
        except (OSError, ValueError, TypeError):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def _join_or_refuse(output_dir: Path, me: Holder, holder: Holder | None) -> Ownership:
    if holder is not None and me.job is not None and holder.job == me.job and \
            (me.node_rank is None or holder.node_rank != me.node_rank):
        return Ownership(writer=False, holder=holder)
    who = holder.describe() if holder else "a process that did not say who it is"
    gone = holder is not None and holder.host == this_host() and process_identity(holder.pid) is None
    state = ("; that launcher is gone and its ranks are still stopping: try again in a minute" if gone else
             "; wait for it to end, stop it (Ctrl-C or kill PID), or choose another output_dir")
    raise RunDirRefused(f"{output_dir} is in use by another dpo-launch train ({who}){state}")
