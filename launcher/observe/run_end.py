"""How a run ended, for `monitor` (which stops following it) and `report` (its Status line).

The launcher records the run's state in `<output_dir>/dpo-launch/status.json` (launcher.run_status). A run
without one (made before it existed, or by `llamafactory-cli train`) is judged from what it left: an alert the
worker marked as stopping the run (`"stopped_run": true` in alerts.jsonl) at the last logged step, else HF's
`train/train_runtime`, logged once the training loop is over (at the last step: finished; before it: stopped
early). A status that still says `running` while the launcher that wrote it is gone from this machine means the
run is over and nobody recorded how. `None` means the run may still be going.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from launcher.errors import EXIT_ALERT_STOP
from launcher.layout import alerts_file
from launcher.run_status import (
    FINISHED,
    LAUNCHER_LOST,
    RUNNING,
    STOPPED_BY_ALERT,
    RunStatus,
)

STOPPED_EARLY = "stopped-early"  # inferred only: the loop ended before max_steps, no status.json says why


@dataclass(frozen=True)
class RunEnd:
    state: str  # a run_status state, or STOPPED_EARLY
    summary: str  # what monitor and report print, e.g. "stopped by the loss-not-finite alert at step 1 (exit 4)"
    exit_code: int | None = None


def read_alerts(output_dir: Path) -> list[dict]:
    """Every alert record in `<output_dir>/dpo-launch/alerts.jsonl`; lines that are not one are skipped."""
    try:
        lines = alerts_file(output_dir).read_bytes().splitlines()
    except OSError:
        return []
    return [alert for alert in map(alert_record, lines) if alert is not None]


def alert_record(line: bytes) -> dict | None:
    """One line of alerts.jsonl as a dict, or None when it is not a JSON object (or not UTF-8)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def stopping_alert(alerts: list[dict]) -> dict | None:
    """The last alert the worker recorded as ending the run (an alert named in --stop-on)."""
    stops = [alert for alert in alerts if alert.get("stopped_run") is True]
    return stops[-1] if stops else None


def describe_alert_stop(alert: dict | None) -> str:
    if alert is None:
        return "stopped by a health alert (--stop-on)"
    return f"stopped by the {alert.get('rule')} alert at step {alert.get('step')}"


def judge_end(status: RunStatus | None, *, step: int, max_steps: int | None, loop_ended: bool,
              alerts: list[dict]) -> RunEnd | None:
    """The run's end from its status.json (`status`, read by the caller: launcher.run_status.read_status), else
    inferred from what it logged; None while it may still be going."""
    if status is None:
        return _inferred(step, max_steps, loop_ended, alerts)
    if status.state == RUNNING:
        gone = _launcher_gone(status)
        return RunEnd(LAUNCHER_LOST, f"launcher lost: {gone}") if gone else None
    return RunEnd(status.state, _describe_status(status, alerts), status.exit_code)


def _describe_status(status: RunStatus, alerts: list[dict]) -> str:
    code = f" (exit {status.exit_code})" if status.exit_code is not None else ""
    if status.state == FINISHED:
        return "finished"
    if status.state == STOPPED_BY_ALERT:
        return describe_alert_stop(stopping_alert(alerts)) + code
    return f"{status.state}{code}" + (f": {status.detail}" if status.detail else "")


def _inferred(step: int, max_steps: int | None, loop_ended: bool, alerts: list[dict]) -> RunEnd | None:
    alert = stopping_alert(alerts)
    if alert is not None and isinstance(alert.get("step"), int) and alert["step"] >= step:
        return RunEnd(STOPPED_BY_ALERT, describe_alert_stop(alert), EXIT_ALERT_STOP)
    if not loop_ended:
        return None
    if max_steps and step < max_steps:
        return RunEnd(STOPPED_EARLY, f"stopped at step {step} of {max_steps}, before its last step (a signal, an "
                                     "alert or a callback ended it; the run directory has no status.json saying which)")
    return RunEnd(FINISHED, "finished")


def _launcher_gone(status: RunStatus) -> str | None:
    """Why the launcher that recorded `running` is known to be gone, or None (alive, or on another machine)."""
    pid = status.launcher_pid
    if not pid or (status.host and status.host != socket.gethostname()):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its launcher (pid {pid}) is gone and recorded no end"
    except PermissionError:  # alive, owned by someone else: not ours to judge by its command line
        return None
    if not _is_dpo_launch(pid):  # the pid was reused
        return f"its launcher (pid {pid}) is gone and recorded no end"
    return None


def _is_dpo_launch(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: assume alive
    return b"launcher" in cmdline or b"dpo-launch" in cmdline
