"""The command line as a whole: every command answers as a real process does (one subprocess smoke test per
command), flags are never abbreviated, and the parser's exit codes hold. Behaviour is tested in process in the
folders of each stage; this file is the only one that starts `python -m launcher` for each command."""

from __future__ import annotations

import json
import re

import pytest

from support.cli import run_cli, run_main
from support.events import EventWriter
from support.workspaces import write_workspace


@pytest.fixture
def workspace(tmp_path):
    return write_workspace(tmp_path)


@pytest.fixture
def run_dir(tmp_path):
    writer = EventWriter(tmp_path / "run" / "tensorboard")
    writer.add_scalar("progress/max_steps", 2, 0)
    for step in (1, 2):
        writer.add_scalar("train/loss", 0.7 - step / 100, step)
    writer.add_scalar("train/train_runtime", 1.0, 2)
    return tmp_path / "run"


@pytest.mark.subprocess
def test_validate_runs_as_a_process(workspace):
    result = run_cli("validate", "config.yaml", cwd=workspace)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-1] == "✓ 0 errors, 0 warnings, 1 note in config.yaml"


@pytest.mark.subprocess
def test_plan_runs_as_a_process(workspace):
    result = run_cli("plan", "config.yaml", "--format", "json", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reference"]["kind"] == "frozen-copy"


@pytest.mark.subprocess
def test_train_dry_run_runs_as_a_process(workspace):
    result = run_cli("train", "config.yaml", "--dry-run", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2] == "command:"
    assert not (workspace / "runs").exists()


@pytest.mark.subprocess
def test_monitor_runs_as_a_process(run_dir):
    result = run_cli("monitor", run_dir, "--once", "--plain")
    assert result.returncode == 0, result.stderr
    assert "step 2/2" in result.stdout


@pytest.mark.subprocess
def test_report_runs_as_a_process(run_dir):
    result = run_cli("report", run_dir)
    assert result.returncode == 0, result.stderr
    assert (run_dir / "dpo-launch" / "report" / "report.md").is_file()


@pytest.mark.subprocess
def test_convert_runs_as_a_process(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    result = run_cli("convert", "in.jsonl", "--out", "out.jsonl", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "converted 1 of 1 records\nwrote out.jsonl (1 pair)\n")


@pytest.mark.subprocess
def test_tensorboard_refuses_a_missing_run_as_a_process(tmp_path):
    result = run_cli("tensorboard", tmp_path / "nope")
    assert result.returncode == 1
    assert result.stderr.startswith("dpo-launch tensorboard: error: ")


@pytest.mark.subprocess
@pytest.mark.parametrize("argv, message", [
    (("generate", "m", "--prompts", "missing.jsonl"), "dpo-launch generate: error: {cwd}/missing.jsonl: no such "
                                                      "prompts file"),
    (("pairs", "missing.jsonl", "--judge", "human", "--out", "o.jsonl"),
     "dpo-launch pairs: error: missing.jsonl: no such candidates file (write one with `dpo-launch generate`)"),
    (("eval", "."), "dpo-launch eval: error: {cwd} is not a dpo-launch run directory: {cwd}/dpo-launch/"
                    "resolved_config.json is missing (pass the output_dir of a run started with `dpo-launch train`)"),
    (("loop", "missing.yaml"), "dpo-launch loop: missing.yaml has errors; nothing was started"),
], ids=lambda value: value[0] if isinstance(value, tuple) else "")
def test_the_evaluation_commands_refuse_bad_input_as_processes(argv, message, tmp_path):
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == message.format(cwd=tmp_path)


def test_an_abbreviated_flag_is_refused_and_a_previous_run_is_untouched(workspace):
    """argparse accepts unique prefixes by default, so `--o` used to mean `--overwrite` and deleted checkpoints."""
    checkpoint = workspace / "runs" / "demo" / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    result = run_main("train", "config.yaml", "--o", cwd=workspace)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "dpo-launch: error: unrecognized arguments: --o"
    assert (checkpoint / "trainer_state.json").is_file()


@pytest.mark.parametrize("argv, unknown", [
    (("validate", "c.yaml", "--verbos"), "--verbos"), (("plan", "c.yaml", "--no-dat"), "--no-dat"),
    (("train", "c.yaml", "--overwrit"), "--overwrit"), (("train", "c.yaml", "--resum"), "--resum"),
    (("monitor", "run", "--onc"), "--onc"), (("tensorboard", "run", "--por", "1"), "--por 1"),
    (("convert", "in.jsonl", "--out", "o.jsonl", "--forc"), "--forc"),
    (("generate", "m", "--prompts", "p.jsonl", "--forc"), "--forc"), (("eval", "run", "--gat", "x"), "--gat x"),
    (("pairs", "c.jsonl", "--judge", "human", "--out", "o.jsonl", "--forc"), "--forc"),
    (("loop", "loop.yaml", "--nproc", "2"), "--nproc 2"),
], ids=lambda value: " ".join(value) if isinstance(value, tuple) else "")
def test_no_command_expands_a_prefix_of_one_of_its_flags(argv, unknown, tmp_path):
    result = run_main(*argv, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"dpo-launch: error: unrecognized arguments: {unknown}"


def test_a_missing_command_is_a_usage_error():
    result = run_main()
    assert result.returncode == 2
    assert "the following arguments are required: COMMAND" in result.stderr


def test_help_exits_0_and_names_every_command():
    result = run_main("--help")
    assert result.returncode == 0
    for command in ("validate", "plan", "train", "monitor", "tensorboard", "report", "convert", "generate", "pairs",
                    "eval", "loop"):
        assert command in result.stdout


COMMANDS = ("validate", "plan", "train", "monitor", "tensorboard", "report", "convert", "schema", "generate", "pairs",
            "eval", "loop")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_no_internal_module_or_source_file(command):
    result = run_main(command, "--help")
    assert result.returncode == 0
    assert not re.findall(r"\blauncher\.\w+|\w+\.py\b", result.stdout), result.stdout


def test_an_unknown_override_position_is_still_an_override(workspace):
    result = run_main("validate", "config.yaml", "--no-data", "pref_beta=0.2", cwd=workspace)
    assert result.returncode == 0, result.stdout
