"""`dpo-launch monitor RUN_DIR`: a snapshot (`--once`) and plain log lines from the run directory alone."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from launcher.observe.events import Scalar, read_all
from launcher.observe.monitor import fmt, plain_lines, progress_line, spark_range, sparkline
from launcher.observe.run_state import RunState
from launcher.run_status import FINISHED, RunStatus, write_status

from support.cli import HEAVY, REPO, cli_env, probe, run_cli, run_main
from support.events import EventWriter
from support.training import REWARD_TAGS, live_run


@pytest.fixture
def finished(tmp_path_factory, tiny_model_dir):
    run = live_run(tmp_path_factory, tiny_model_dir)
    assert run.returncode == 0, run.output[-3000:]
    return run.out


def latest(out, tag):
    return [e.value for e in read_all(out / "tensorboard") if isinstance(e, Scalar) and e.tag == tag][-1]


@pytest.mark.slow
def test_once_on_a_finished_run_shows_the_final_reward_values(finished):
    result = run_cli("monitor", finished, "--once")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "step 60/60 (100%) · finished · " in lines[1]
    for tag in REWARD_TAGS:
        label = tag.removeprefix("train/")
        (row,) = [line for line in lines if line.startswith(f"│ {label} ")]
        assert row.split()[2] == fmt(latest(finished, tag))
        assert row.split()[-2] == fmt(latest(finished, tag.replace("train/", "eval/")))  # eval column


@pytest.mark.slow
def test_plain_follow_of_a_finished_run_prints_one_line_per_step_then_the_summary(finished):
    result = run_cli("monitor", finished, "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Step 1: policy == reference, so the loss is ln 2 and every reward is exactly 0.
    assert lines[0].startswith("step 1/60: loss=0.6931 rewards/accuracies=0.0000 rewards/margins=0.0000 "
                               "rewards/chosen=0.0000 rewards/rejected=0.0000 logps/chosen=")
    assert " logps/rejected=" in lines[0]
    assert [line.split(":")[0] for line in lines if line.startswith("step ") and "finished" not in line] == \
        [f"step {n}/60" for n in range(1, 61)]
    # The final evaluation repeats step 60 (in a second event file): one line per step.
    assert [line.split(":")[0] for line in lines if line.startswith("eval at")] == \
        ["eval at step 20/60", "eval at step 40/60", "eval at step 60/60"]
    assert lines[-1].startswith("step 60/60 (100%) · finished")


@pytest.mark.slow
def test_monitor_and_report_never_import_the_training_stack(finished, tmp_path):
    for args in (["monitor", str(finished), "--once"], ["report", str(finished)]):
        assert probe(args, tmp_path, tmp_path / "report.json", HEAVY) == {"exit": 0, "heavy": []}


def test_a_run_dir_without_event_files_is_a_clear_error(tmp_path):
    (tmp_path / "run" / "dpo-launch").mkdir(parents=True)
    result = run_main("monitor", tmp_path / "run", "--once")
    assert result.returncode == 1
    assert result.stderr == (
        f"dpo-launch monitor: error: {tmp_path / 'run'}: no TensorBoard directory (looked for "
        f"{tmp_path / 'run' / 'tensorboard'} and event files under {tmp_path / 'run'}); `dpo-launch train` writes "
        f"them to <output_dir>/tensorboard once the first step is logged; check that RUN_DIR is the config's "
        f"output_dir and report_to includes tensorboard\n")


def test_a_missing_run_dir_is_a_clear_error(tmp_path):
    result = run_main("monitor", tmp_path / "nope")
    expected = (f"dpo-launch monitor: error: {tmp_path / 'nope'}: no such directory (expected a run directory: "
                f"the config's output_dir)\n")
    assert (result.returncode, result.stderr) == (1, expected)


def write_run(root, steps, grad_norm=lambda step: 1.0):
    writer = EventWriter(root / "tensorboard")
    for step in range(1, steps + 1):
        writer.add_scalar("train/loss", 0.7 - step / 1000, step, walltime=1000.0 + step / 2)
        writer.add_scalar("train/grad_norm", grad_norm(step), step, walltime=1000.0 + step / 2)
        writer.add_scalar("train/rewards/margins", step / 100, step, walltime=1000.0 + step / 2)
    return root


def test_without_the_worker_the_monitor_applies_the_alert_rules_to_the_event_files(tmp_path):
    run = write_run(tmp_path / "plain-lf-run", 12, grad_norm=lambda step: 50.0 if step == 9 else 1.0)
    result = run_main("monitor", run, "--once")
    assert result.returncode == 0, result.stderr
    assert "warning[grad-norm-spike] step 9: grad_norm 50 is 50.0x the median 1 of the previous 8 points" in \
        " ".join(line.strip("│ ") for line in result.stdout.splitlines())


def test_plain_lines_follow_new_steps_and_progress_uses_the_logged_rate(tmp_path):
    run = write_run(tmp_path / "run", 4)
    state = RunState(run)
    update = state.poll()
    assert plain_lines(state, update) == [f"step {n}: loss={fmt(0.7 - n / 1000)} rewards/margins={fmt(n / 100)}"
                                          for n in range(1, 5)]
    assert progress_line(state) == "step 4 · ETA - · 2.00 steps/s"
    assert state.poll().train_steps == []


def test_sparkline_scales_between_min_and_max_and_marks_nan():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, math.nan, 2.0]) == "▁·█"
    assert sparkline(list(range(100)), width=5) == "▁▃▅▆█"


def test_a_flat_series_is_drawn_in_the_middle_and_every_sparkline_carries_its_scale():
    # A flat 1.0 accuracy used to be drawn as all ▁, which reads as "stuck at the bottom".
    assert sparkline([1.0, 1.0, math.nan, 1.0]) == "▄▄·▄"
    assert spark_range([1.0, 1.0, math.nan, 1.0]) == "1..1"
    assert spark_range(list(range(100)), width=5) == "95..99"
    assert spark_range([-53.44312, 1.5e-5]) == "-53.44..1.5e-05"
    assert spark_range([math.nan]) == ""


def test_once_shows_logps_rows_and_the_scale_beside_each_sparkline(tmp_path):
    writer = EventWriter(tmp_path / "run" / "tensorboard")
    for step in range(1, 6):
        for tag, value in (("train/loss", 0.7 - step / 100), ("train/rewards/accuracies", 1.0),
                           ("train/logps/chosen", -40.0 - step), ("train/logps/rejected", -45.0 - 2 * step)):
            writer.add_scalar(tag, value, step, walltime=1000.0 + step)
    result = run_main("monitor", tmp_path / "run", "--once")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line.split()[2:] for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert rows["rewards/accuracies"][:3] == ["1.0000", "▄▄▄▄▄", "1..1"]
    assert rows["logps/chosen"][:3] == ["-45.0000", "█▆▅▃▁", "-45..-41"]
    assert rows["logps/rejected"][:3] == ["-55.0000", "█▆▅▃▁", "-55..-47"]
    state = RunState(tmp_path / "run")
    assert plain_lines(state, state.poll())[-1] == \
        "step 5: loss=0.6500 rewards/accuracies=1.0000 logps/chosen=-45.0000 logps/rejected=-55.0000"


def test_throughput_after_resume_counts_only_this_launchs_steps(tmp_path):
    # Launch 1 logged steps 1-10 at 1 step/s and stopped; launch 2 started an hour later, resumed from
    # checkpoint-10 and logs steps 11-20 at 0.5 steps/s. Over the global step (20 steps in an hour) it would
    # show 0.01 steps/s and an ETA of days.
    writer = EventWriter(tmp_path / "run" / "tensorboard")
    writer.add_scalar("progress/max_steps", 100, 0)
    for step in range(1, 11):
        writer.add_scalar("train/loss", 0.7, step, walltime=1000.0 + step)
    restarted = 1000.0 + 3600.0
    write_status(tmp_path / "run", RunStatus("running", started_at=restarted))
    for step in range(11, 21):
        writer.add_scalar("train/loss", 0.7, step, walltime=restarted + 60.0 + 2 * (step - 10))
    state = RunState(tmp_path / "run")
    state.poll()
    assert state.steps_per_second() == 0.5
    assert progress_line(state) == "step 20/100 (20%) · ETA 0:02:40 · 0.50 steps/s"
    write_status(tmp_path / "run", RunStatus(FINISHED, 0, started_at=restarted, ended_at=restarted + 100))
    state.poll()
    assert state.steps_per_second() == 0.5  # the finished run's rate is still this launch's


def test_numbers_are_formatted_for_reading():
    assert [fmt(v) for v in (None, 0.69314, 0.0, 1.5e-5, 123456.0, math.nan)] == [
        "-", "0.6931", "0.0000", "1.500e-05", "1.235e+05", "nan"]


@pytest.mark.subprocess
def test_follow_mode_prints_steps_as_they_are_written_and_exits_when_the_run_finishes(tmp_path):
    writer = EventWriter(tmp_path / "run" / "tensorboard")
    writer.add_scalar("progress/max_steps", 4, 0)
    writer.add_scalar("train/loss", 0.69, 1)
    with subprocess.Popen([sys.executable, "-m", "launcher", "monitor", str(tmp_path / "run"), "--interval", "0.1"],
                          cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, text=True) as monitor:
        assert monitor.stdout.readline() == "step 1/4: loss=0.6900\n"  # read before the later steps exist
        for step in (2, 3, 4):
            writer.add_scalar("train/loss", 0.69 - step / 100, step)
        writer.add_scalar("train/train_runtime", 1.5, 4)  # HF logs it once training has ended
        rest, _ = monitor.communicate(timeout=120)
    assert monitor.returncode == 0
    assert rest.splitlines()[:3] == ["step 2/4: loss=0.6700", "step 3/4: loss=0.6600", "step 4/4: loss=0.6500"]
    assert rest.splitlines()[-1].startswith("step 4/4 (100%) · finished")


def test_train_live_view_draws_the_panel_until_stopped(tmp_path):
    import io
    import re

    from rich.console import Console

    from launcher.observe.train_console import LiveView

    write_run(tmp_path / "run", 5)
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    handle = LiveView(tmp_path / "run", console=console)
    handle.stop()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    assert f"dpo-launch monitor: {tmp_path / 'run'}" in screen
    assert re.search(r"rewards/margins\s+0\.0500\s", screen)


@pytest.mark.subprocess
def test_a_folder_of_several_runs_is_not_read_as_one_run(tmp_path):
    for run in ("run-a", "run-b"):  # e.g. pointing monitor at /tmp or at a folder of output_dirs
        (tmp_path / run / "tensorboard").mkdir(parents=True)
        (tmp_path / run / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"")

    result = run_cli("monitor", tmp_path, "--once")

    assert result.returncode == 1
    assert result.stderr.startswith(f"dpo-launch monitor: error: {tmp_path}: no TensorBoard directory")


def test_a_value_at_a_step_is_the_one_logged_last_there_across_polls(tmp_path):
    # A resumed run logs a step again (launch 2 redoes the steps after its checkpoint): the value shown is the
    # newer one, also when it arrives in a later poll; a step the tag was not logged at has none.
    writer = EventWriter(tmp_path / "run" / "tensorboard")
    for step in range(1, 6):
        writer.add_scalar("train/loss", 0.7 - step / 100, step)
    state = RunState(tmp_path / "run")
    state.poll()
    assert (state.value_at("train/loss", 4), state.value_at("train/loss", 6)) == (pytest.approx(0.66), None)
    writer.add_scalar("train/loss", 0.5, 4)
    state.poll()
    assert state.value_at("train/loss", 4) == pytest.approx(0.5)
    assert (state.value_at("train/loss", 5), state.value_at("train/rewards/margins", 4)) == (pytest.approx(0.65), None)
