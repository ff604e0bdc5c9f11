"""A bug in dpo-launch ends with exit 3 and a crash log of its own: never a traceback on the terminal, and never
a log that a later crash overwrites."""

from __future__ import annotations

import tempfile
import time

from support.cli import run_main
from support.workspaces import write_workspace


def test_two_crashes_in_the_same_second_leave_two_logs_each_with_its_own_argv(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("launcher.commands.validate.validate", crash)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(time, "strftime", lambda *args: "20260101-120000")  # one second for both
    (tmp_path / "tmp").mkdir()
    root = write_workspace(tmp_path / "ws")
    first = run_main("validate", "config.yaml", cwd=root)
    second = run_main("validate", "config.yaml", "--verbose", cwd=root)
    assert (first.returncode, second.returncode) == (3, 3)
    logs = sorted((tmp_path / "tmp").iterdir())
    assert len(logs) == 2
    assert all(log.name.startswith("dpo-launch-crash-20260101-120000-") and log.suffix == ".log" for log in logs)
    by_output = {run.stderr: run for run in (first, second)}
    for log in logs:
        [run] = [run for stderr, run in by_output.items() if str(log) in stderr]
        assert run.stderr == f"dpo-launch: internal error (this is a bug in dpo-launch); details in {log}\n"
        assert f"argv: {run.args[1:]!r}" in log.read_text()
        assert "RuntimeError: boom" in log.read_text()
