"""The launcher's view of its job's processes: live descendants (from /proc), signals that ignore processes
already gone, and the Linux "child subreaper" role, so ranks orphaned by a dead torchrun are re-parented to
the launcher and can be swept and reaped (launcher.run.supervise).
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def reap_orphans() -> None:
    """Collect exit statuses of re-parented orphans we killed, so none stays a zombie."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def descendants(root: int) -> list[int]:
    """Every live descendant of `root`, from /proc (empty where /proc is not available)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        ppid = parent_pid(entry)
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def parent_pid(proc_entry: Path) -> int | None:
    try:
        stat = (proc_entry / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses; the fields after the last ')' do not
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


def kill_main_thread(pid: int, signum: int) -> None:
    """Signal the process's main thread only (tgkill(2); its thread id is the pid). A signal sent to the whole
    process is handled by whichever thread runs first, and faulthandler's stack dump taken from another thread
    while the main thread runs reads frames that are changing under it: we saw it cut short mid-line."""
    tgkill = getattr(_libc(), "tgkill", None) if sys.platform.startswith("linux") else None
    if tgkill is None or tgkill(pid, pid, signum) != 0:  # glibc < 2.30 (no tgkill), or the call failed
        kill(pid, signum)


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def become_subreaper() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not fatal: torchrun still stops its ranks in the normal cases
        pass


__all__ = ["become_subreaper", "descendants", "kill", "kill_main_thread", "reap_orphans", "signal_group"]
