"""monitor and report read how a run ended: from dpo-launch/status.json when the launcher wrote one, inferred from
the run directory otherwise (an alert that stopped the run, HF's train_runtime), a missing status.json tolerated.
`monitor` ends on an ended run instead of waiting for steps that never come, and never shows an ETA for it."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from launcher.observe.run_state import RunState
from launcher.run_status import RunStatus, write_status

from support.cli import run_main
from support.events import write_run

GONE_PID = 2**31 - 2  # beyond any pid_max: no such process


def stop_alert(step: int) -> str:
    return json.dumps({"rule": "loss-not-finite", "severity": "error", "step": step, "message": "grad_norm is nan",
                       "hint": "lower the lr", "values": {"train/grad_norm": "nan"}, "stopped_run": True})


def progress(result) -> str:
    [line] = [line.strip("│ ") for line in result.stdout.splitlines() if "step " in line and " · " in line]
    return line


def monitor_follow(run, *flags: str, timeout: float = 60) -> object:
    """`dpo-launch monitor RUN --plain` in a thread; the result, or an AssertionError if it never ends."""
    done: dict = {}
    args = ("monitor", run, "--plain", "--interval", "0.1", *flags)
    thread = threading.Thread(target=lambda: done.update(result=run_main(*args)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"monitor was still following the ended run after {timeout} s"
    return done["result"]


@pytest.mark.parametrize("status, shown", [
    (RunStatus("interrupted", exit_code=130, detail="SIGINT"), "interrupted (exit 130): SIGINT"),
    (RunStatus("failed", exit_code=1, detail="rank 1 failed (exit code 1)"),
     "failed (exit 1): rank 1 failed (exit code 1)"),
    (RunStatus("stalled", exit_code=5), "stalled (exit 5)"),
    (RunStatus("launcher-lost", detail="ranks stopped"), "launcher-lost: ranks stopped"),
], ids=["interrupted", "failed", "stalled", "launcher-lost"])
def test_monitor_once_shows_the_recorded_end_instead_of_an_eta(tmp_path, status, shown):
    run = write_run(tmp_path / "run", 3, max_steps=5)
    write_status(run, status)
    result = run_main("monitor", run, "--once")
    assert result.returncode == 0, result.stderr
    assert progress(result) == f"step 3/5 (60%) · {shown} · 2.00 steps/s"


def test_monitor_follow_ends_on_a_run_that_exited_130(tmp_path):
    run = write_run(tmp_path / "run", 3, max_steps=5)
    write_status(run, RunStatus("interrupted", exit_code=130, detail="SIGINT"))
    result = monitor_follow(run)
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == "step 3/5 (60%) · interrupted (exit 130): SIGINT · 2.00 steps/s"


def test_a_status_still_running_whose_launcher_is_gone_ends_as_launcher_lost(tmp_path):
    run = write_run(tmp_path / "run", 3, max_steps=5)
    write_status(run, RunStatus("running", launcher_pid=GONE_PID, host=socket.gethostname()))
    result = monitor_follow(run)
    assert result.stdout.splitlines()[-1] == (f"step 3/5 (60%) · launcher lost: its launcher (pid {GONE_PID}) is "
                                              "gone and recorded no end · 2.00 steps/s")


def test_a_running_status_from_another_machine_is_taken_at_its_word(tmp_path):
    run = write_run(tmp_path / "run", 3, max_steps=5)
    write_status(run, RunStatus("running", launcher_pid=GONE_PID, host="another-node"))
    state = RunState(run)
    state.poll()
    assert state.end is None


@pytest.mark.parametrize("steps, finished, alerts, expected", [
    (5, True, [], "finished"),
    (3, True, [], "stopped at step 3 of 5, before its last step (a signal, an alert or a callback ended it; the "
                  "run directory has no status.json saying which)"),
    (1, True, [stop_alert(1)], "stopped by the loss-not-finite alert at step 1"),
    (3, False, [], None),
], ids=["finished", "stopped-early", "alert", "running"])
def test_without_status_json_the_end_is_inferred_from_the_run_directory(tmp_path, steps, finished, alerts,
                                                                        expected):
    run = write_run(tmp_path / "run", steps, max_steps=5, finished=finished)
    (run / "dpo-launch").mkdir(exist_ok=True)
    (run / "dpo-launch" / "alerts.jsonl").write_text("".join(a + "\n" for a in alerts), encoding="utf-8")
    state = RunState(run)
    state.poll()
    assert (state.end.summary if state.end else None) == expected


def test_an_alert_stop_that_a_resumed_run_went_past_is_not_the_end(tmp_path):
    run = write_run(tmp_path / "run", 4, max_steps=8)
    (run / "dpo-launch").mkdir(exist_ok=True)
    (run / "dpo-launch" / "alerts.jsonl").write_text(stop_alert(2) + "\n", encoding="utf-8")
    state = RunState(run)
    state.poll()
    assert state.end is None


def test_report_states_which_alert_stopped_the_run_at_which_step(tmp_path):
    run = write_run(tmp_path / "run", 1, max_steps=30, finished=True)
    (run / "dpo-launch").mkdir(exist_ok=True)
    (run / "dpo-launch" / "alerts.jsonl").write_text(stop_alert(1) + "\n", encoding="utf-8")
    write_status(run, RunStatus("stopped-by-alert", exit_code=4))
    result = run_main("report", run)
    assert result.returncode == 0, result.stderr
    lines = (run / "dpo-launch" / "report" / "report.md").read_text(encoding="utf-8").splitlines()
    assert lines[4] == "- Status: stopped by the loss-not-finite alert at step 1 (exit 4), last logged step 1 of " \
                       "30, train_runtime 1.5 s"
    assert "- **error** `loss-not-finite` at step 1: grad_norm is nan (lower the lr); it stopped the run " \
           "(--stop-on)" in lines


def test_monitor_on_a_run_that_ended_before_logging_a_step_says_so(tmp_path):
    write_status(tmp_path / "run", RunStatus("failed", exit_code=1, detail="rank 0 failed (exit code 1)"))
    result = monitor_follow(tmp_path / "run", "--wait")
    assert (result.returncode, result.stderr) == (0, f"dpo-launch monitor: {tmp_path / 'run'}: no step was logged; "
                                                     "the run ended: failed (exit 1): rank 0 failed (exit code 1)\n")
