"""The state of a run, recorded in `<output_dir>/dpo-launch/status.json`: written by the launcher that owns the
run (when it starts and when it ends) and by the ranks when they find their launcher gone; read by `monitor`,
`report` and the next `train`. Shared vocabulary: imports only the layout and atomic writes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.atomic import write_text_atomic
from launcher.errors import EXIT_ALERT_STOP, EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_OK, EXIT_STALLED, EXIT_TERMINATED
from launcher.layout import run_dir

STATUS_FILE = "status.json"

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
INTERRUPTED = "interrupted"  # SIGINT, SIGTERM or SIGHUP reached the launcher; every rank saved and stopped
STOPPED_BY_ALERT = "stopped-by-alert"
STALLED = "stalled"
LAUNCHER_LOST = "launcher-lost"  # the ranks found their launcher dead and stopped on their own
STATES = (RUNNING, FINISHED, FAILED, INTERRUPTED, STOPPED_BY_ALERT, STALLED, LAUNCHER_LOST)
ENDED = tuple(state for state in STATES if state != RUNNING)


@dataclass
class RunStatus:
    state: str
    exit_code: int | None = None
    launcher_pid: int | None = None
    host: str | None = None
    started_at: float | None = None  # time.time() of the launch
    ended_at: float | None = None
    detail: str | None = None  # one line for people: why it ended (the alert, the stalled rank, the signal)
    extra: dict[str, Any] = field(default_factory=dict)


def state_for_exit_code(code: int) -> str:
    """The state a job's exit code means (what the launcher records when the job ends)."""
    if code == EXIT_OK:
        return FINISHED
    if code == EXIT_ALERT_STOP:
        return STOPPED_BY_ALERT
    if code == EXIT_STALLED:
        return STALLED
    if code in (EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_TERMINATED):
        return INTERRUPTED
    return FAILED


def status_path(output_dir: Path | str) -> Path:
    return run_dir(output_dir) / STATUS_FILE


def write_status(output_dir: Path | str, status: RunStatus) -> None:
    """Atomically: a reader sees the old status or the new one, never half of one."""
    path = status_path(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(asdict(status), indent=2) + "\n")


def read_status(output_dir: Path | str) -> RunStatus | None:
    """The recorded status, or None when there is none or it cannot be read (a reader never fails on it)."""
    try:
        data = json.loads(status_path(output_dir).read_text(encoding="utf-8"))
        known = {key: data[key] for key in RunStatus.__dataclass_fields__ if key in data}
        status = RunStatus(**known)
    except (OSError, ValueError, TypeError):
        return None
    return status if status.state in STATES else None
