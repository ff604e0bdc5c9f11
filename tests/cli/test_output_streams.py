"""The exit code tells the result whatever happens to stdout, and `--format json` always answers in JSON.

A reader that leaves early (`dpo-launch ... | head -2`) must not turn a failing run into exit 0, nor stop the
work; with `--format json` every exit (usage error, bad input, crash, Ctrl-C) prints exactly one JSON object.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.observe.events import Scalar, read_all

from support.cli import cli_env, run_main
from support.training import make_workspace, training_env
from support.workspaces import write_workspace

BAD = {"conversations": [{"from": "gpt", "value": "4"}], "chosen": "4", "rejected": "5"}


def bad_workspace(root: Path, records: int) -> Path:
    """A plan-ready workspace whose every record is wrong in two ways (one line each with --verbose)."""
    write_workspace(root, records=0)
    (root / "data" / "prefs.jsonl").write_text("".join(json.dumps(BAD) + "\n" for _ in range(records)))
    return root


class ReaderLeavesAfter(io.StringIO):
    """stdout piped into a reader that exits after `lines` lines, as `| head -N` does."""

    def __init__(self, lines: int):
        super().__init__()
        self.lines = lines

    def write(self, text: str) -> int:
        if self.getvalue().count("\n") >= self.lines:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)

    def flush(self) -> None:
        if self.getvalue().count("\n") >= self.lines:
            raise BrokenPipeError(32, "Broken pipe")


def main_with_stdout(stdout: io.StringIO, *args: str, cwd: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


# --- a closed stdout ------------------------------------------------------------------------------------

def test_validate_exits_1_for_a_bad_config_when_its_reader_leaves_after_two_lines(tmp_path):
    root = bad_workspace(tmp_path, records=10)
    full = run_main("validate", "config.yaml", "--verbose", cwd=root)
    assert full.returncode == 1 and len(full.stdout.splitlines()) > 2
    stdout = ReaderLeavesAfter(2)
    code, stderr = main_with_stdout(stdout, "validate", "config.yaml", "--verbose", cwd=root)
    assert (code, stderr) == (1, "")
    assert stdout.getvalue().splitlines() == full.stdout.splitlines()[:2]


def test_validate_exits_0_for_a_good_config_when_its_reader_leaves_at_once(tmp_path):
    root = write_workspace(tmp_path)
    code, stderr = main_with_stdout(ReaderLeavesAfter(0), "validate", "config.yaml", cwd=root)
    assert (code, stderr) == (0, "")


@pytest.mark.subprocess
def test_validate_piped_into_head_exits_1_and_prints_no_broken_pipe_error(tmp_path):
    # 2,000 records x 2 lines of about 150 bytes: far more than a pipe holds, so validate writes after head left
    root = bad_workspace(tmp_path, records=2000)
    with subprocess.Popen([sys.executable, "-m", "launcher", "validate", "config.yaml", "--verbose"], cwd=root,
                          env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        head = [proc.stdout.readline() for _ in range(2)]
        proc.stdout.close()  # what `head -2` does when it has its lines
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    assert [b": error[" in line for line in head] == [True, True], head
    assert (code, stderr) == (1, "")


# --- --format json: one object for every exit --------------------------------------------------------------

def usage_error(message: str) -> dict:
    return {"ok": False, "error": {"kind": "usage", "exit_code": 2, "message": message, "crash_log": None}}


@pytest.mark.parametrize("args, message, stderr_end", [
    (("validate", "config.yaml", "--format", "json", "--bogus"),
     "dpo-launch: error: unrecognized arguments: --bogus", "dpo-launch: error: unrecognized arguments: --bogus\n"),
    (("validate", "--format=json"), "dpo-launch: error: a config file is required: dpo-launch <command> "
     "CONFIG.yaml [key=value ...]", "required: dpo-launch <command> CONFIG.yaml [key=value ...]\n"),
    (("validate", "config.yaml", "--format", "json", "--stats-dir", "s"),
     "dpo-launch: error: --stats-dir is only used with --stats", "--stats-dir is only used with --stats\n"),
    (("plan", "config.yaml", "--format", "json", "--nproc-per-node", "x"),
     "dpo-launch plan: error: argument --nproc-per-node/--nproc_per_node: invalid int value: 'x'",
     "invalid int value: 'x'\n"),
], ids=["unknown-flag", "no-config", "flag-combination", "bad-value"])
def test_a_usage_error_with_format_json_prints_one_json_error_object(tmp_path, args, message, stderr_end):
    result = run_main(*args, cwd=write_workspace(tmp_path))
    assert result.returncode == 2
    assert json.loads(result.stdout) == usage_error(message)
    assert result.stderr.endswith(stderr_end)  # the human message still goes to stderr


def test_a_crash_with_format_json_prints_one_json_object_naming_the_crash_log(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        sys.stdout.write('{"ok": tr')  # half an object, then the bug
        raise RuntimeError("boom")

    monkeypatch.setattr("launcher.commands.validate.validate", crash)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = run_main("validate", "config.yaml", "--format", "json", cwd=write_workspace(tmp_path / "ws"))
    data = json.loads(result.stdout)
    log = Path(data["error"]["crash_log"])
    assert result.returncode == 3
    assert data == {"ok": False, "error": {"kind": "internal", "exit_code": 3, "message": "dpo-launch: internal "
                                           "error (this is a bug in dpo-launch)", "crash_log": str(log)}}
    assert log.parent == tmp_path and "RuntimeError: boom" in log.read_text()
    assert result.stderr == f"dpo-launch: internal error (this is a bug in dpo-launch); details in {log}\n"


def test_ctrl_c_with_format_json_prints_one_json_object(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("launcher.commands.plan.validate", interrupted)
    result = run_main("plan", "config.yaml", "--format", "json", cwd=write_workspace(tmp_path))
    assert (result.returncode, result.stderr) == (130, "dpo-launch: interrupted\n")
    assert json.loads(result.stdout) == {"ok": False, "error": {"kind": "interrupted", "exit_code": 130,
                                                                "message": "dpo-launch: interrupted",
                                                                "crash_log": None}}


def test_a_user_error_with_format_json_prints_one_json_error_object(tmp_path, monkeypatch):
    from launcher.errors import UserError

    def refuse(*args, **kwargs):
        raise UserError("--nproc-per-node 3 but this machine has no GPU")

    monkeypatch.setattr("launcher.commands.plan.planned_topology", refuse)
    result = run_main("plan", "config.yaml", "--format", "json", cwd=write_workspace(tmp_path))
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"ok": False, "error": {
        "kind": "input", "exit_code": 1, "message": "dpo-launch plan: error: --nproc-per-node 3 but this machine "
        "has no GPU", "crash_log": None}}


@pytest.mark.parametrize("records, code", [(3, 0), (0, 1)], ids=["valid", "errors"])
def test_results_with_format_json_are_one_object_with_ok(tmp_path, records, code):
    root = write_workspace(tmp_path) if records else bad_workspace(tmp_path, records=3)
    result = run_main("validate", "config.yaml", "--format", "json", cwd=root)
    assert result.returncode == code
    assert json.loads(result.stdout)["ok"] is (code == 0)


@pytest.mark.slow
def test_train_piped_into_head_trains_to_the_end_and_exits_with_the_jobs_code(tmp_path, tiny_model_dir):
    ws = make_workspace(tmp_path / "ws", tiny_model_dir)
    with open(tmp_path / "stderr.txt", "wb") as stderr, \
            subprocess.Popen([sys.executable, "-m", "launcher", "train", "config.yaml"], cwd=ws.root,
                             env=training_env(), stdout=subprocess.PIPE, stderr=stderr) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()  # `| head -1`: every later write to stdout fails with EPIPE
        code = proc.wait(timeout=600)
    errors = (tmp_path / "stderr.txt").read_text(errors="replace")
    assert first, errors
    assert code == 0, errors[-3000:]
    steps = sorted(e.step for e in read_all(ws.out / "tensorboard") if isinstance(e, Scalar) and e.tag == "train/loss")
    assert steps == [1, 2, 3, 4, 5]  # the job was neither stopped nor killed by the closed pipe
    assert "BrokenPipeError" not in errors
