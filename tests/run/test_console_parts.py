"""The parts of `train`'s console, each on its own and without training: which rank lines the console shows and
which go to the logs only (launcher.run.tee, launcher.rank_output), how a rank marks them (launcher.worker.console),
the step lines and the end-of-run summary read from a run directory, and the live view on a terminal from the
launch on. tests/run/test_train_console.py shows them together in a real run."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import time

import pytest

from launcher.cli import build_parser, parse_arguments
from launcher.commands.arguments import LAUNCH_FLAGS
from launcher.commands.train import resume_argv
from launcher.observe.run_state import RunState
from launcher.observe.run_summary import summary_lines
from launcher.observe.train_console import LiveView, StepLines, new_lines
from launcher.run.tee import Tee
from launcher.run_status import RunStatus, write_status

from support.cli import cli_env
from support.events import write_run, write_scalars

MARK = "\x1e"


def through_tee(lines: list[str], tmp_path, distributed: bool = False, verbose: bool = False) -> Tee:
    tee = Tee(tmp_path, distributed, verbose)
    with tee:
        for line in lines:
            tee.line(line.encode())
    return tee


def test_the_console_shows_only_the_marked_lines_and_the_rank_log_gets_every_line_unmarked(tmp_path, capsys):
    through_tee(["[INFO|loader] loading weights\n", f"{MARK}[WARNING|parser] >> mixed precision\n",
                 f"\r 10%|█   | 3/30{MARK}dpo-launch: warning[x] step 3: y\n", "  \"hidden_size\": 64,\n"], tmp_path)
    assert capsys.readouterr().out == "[WARNING|parser] >> mixed precision\ndpo-launch: warning[x] step 3: y\n"
    assert (tmp_path / "rank-0.log").read_bytes().decode() == (
        "[INFO|loader] loading weights\n[WARNING|parser] >> mixed precision\n"
        "\r 10%|█   | 3/30dpo-launch: warning[x] step 3: y\n  \"hidden_size\": 64,\n")
    assert (tmp_path / "launcher.log").read_bytes() == (tmp_path / "rank-0.log").read_bytes()


def test_once_the_logs_cannot_be_written_the_console_shows_every_line(tmp_path, capsys):
    (tmp_path / "launcher.log").symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    through_tee(["[INFO|loader] loading weights\n", "Traceback (most recent call last):\n",
                 f"{MARK}dpo-launch worker: training failed\n", "RuntimeError: CUDA error\n"], tmp_path)
    captured = capsys.readouterr()
    assert captured.out == ("[INFO|loader] loading weights\nTraceback (most recent call last):\n"
                            "dpo-launch worker: training failed\nRuntimeError: CUDA error\n")
    assert captured.err == (f"dpo-launch: cannot write the logs in {tmp_path} (No space left on device); from here "
                            "on every line of the job's output is shown here instead\n")


def test_a_rank_whose_last_lines_were_not_shown_keeps_them_for_the_end(tmp_path, capsys):
    tee = through_tee(["[INFO|loader] loading\n", f"{MARK}dpo-launch worker: training\n", "[INFO] step\n",
                       "Traceback (most recent call last):\n", "RuntimeError: boom\n"], tmp_path)
    assert tee.last_unshown(0) == ["[INFO] step", "Traceback (most recent call last):", "RuntimeError: boom"]
    said = through_tee(["Traceback (most recent call last):\n", f"{MARK}dpo-launch worker: training failed\n"],
                       tmp_path)
    assert said.last_unshown(0) == []  # the worker's own last line said why, on the console


DIES_UNHANDLED = """
import sys
print("[INFO|loader] loading the model", flush=True)
print("Traceback (most recent call last):", file=sys.stderr)
print('  File "worker.py", line 1, in <module>', file=sys.stderr)
print("ImportError: cannot import name 'x'", file=sys.stderr)
sys.exit(1)
"""

SUPERVISE = """
import sys
from pathlib import Path
from launcher.plan.launch import LaunchSpec
from launcher.run.supervise import supervise
end = supervise(LaunchSpec([sys.executable, "-c", sys.argv[2]], dict(__import__("os").environ)), Path(sys.argv[1]))
sys.exit(end.code)
"""


@pytest.mark.subprocess
def test_a_rank_that_dies_outside_the_workers_handler_has_its_last_lines_on_the_console(tmp_path):
    result = subprocess.run([sys.executable, "-c", SUPERVISE, str(tmp_path / "my logs"), DIES_UNHANDLED],
                            capture_output=True, text=True, env=cli_env(), timeout=120)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "dpo-launch: the last lines rank 0 printed (the whole output is in its log):\n"
        "  [INFO|loader] loading the model\n  Traceback (most recent call last):\n"
        '    File "worker.py", line 1, in <module>\n  ImportError: cannot import name \'x\'\n'
        f"dpo-launch: training failed (exit code 1); log: {tmp_path / 'my logs' / 'rank-0.log'}\n")


def test_verbose_shows_every_line_without_its_marks(tmp_path, capsys):
    through_tee(["[INFO|loader] loading weights\n", f"{MARK}dpo-launch worker: training\n"], tmp_path, verbose=True)
    assert capsys.readouterr().out == "[INFO|loader] loading weights\ndpo-launch worker: training\n"


def test_with_several_ranks_the_console_keeps_the_rank_prefix_and_torchruns_own_lines(tmp_path, capsys):
    through_tee(["[rank1]: [INFO|loader] loading\n", f"[rank1]: {MARK}dpo-launch worker: interrupted (rank 1)\n",
                 "W1206 torch/distributed/run.py] Setting OMP_NUM_THREADS\n"], tmp_path, distributed=True)
    assert capsys.readouterr().out == ("[rank1]: dpo-launch worker: interrupted (rank 1)\n"
                                       "W1206 torch/distributed/run.py] Setting OMP_NUM_THREADS\n")
    assert (tmp_path / "rank-1.log").read_text() == "[INFO|loader] loading\ndpo-launch worker: interrupted (rank 1)\n"


def test_a_line_torchrun_appended_to_another_ranks_unfinished_one_goes_to_its_own_rank(tmp_path, capsys):
    """torchrun relays what it read of each rank's file, whole lines or not: rank 0's progress bar (no newline yet)
    was followed on one line by rank 1's closing line, which then went to rank 0 (seen in two of eight two-rank
    runs on a loaded machine). c10's own `[rank1]:[W...` prefix (no space) is not a cut."""
    tee = through_tee([f"[rank0]:   0%|   | 0/30 [00:00<?, ?it/s][rank1]: {MARK}dpo-launch worker: stopped (rank 1)\n",
                       "[rank0]: \r  3%|▎  | 1/30\n", "[rank1]: [rank1]:[W1206 reducer.cpp] c10 says\n"],
                      tmp_path, distributed=True)
    assert capsys.readouterr().out == "[rank1]: dpo-launch worker: stopped (rank 1)\n"
    assert (tmp_path / "rank-0.log").read_bytes().decode() == "  0%|   | 0/30 [00:00<?, ?it/s]\r  3%|▎  | 1/30\n"
    assert (tmp_path / "rank-1.log").read_bytes().decode() == (
        "dpo-launch worker: stopped (rank 1)\n[rank1]:[W1206 reducer.cpp] c10 says\n")
    assert (tmp_path / "launcher.log").read_bytes().decode() == (
        "[rank0]:   0%|   | 0/30 [00:00<?, ?it/s]\n[rank1]: dpo-launch worker: stopped (rank 1)\n"
        "[rank0]: \r  3%|▎  | 1/30\n[rank1]: [rank1]:[W1206 reducer.cpp] c10 says\n")
    assert tee.last_unshown(0) == ["  0%|   | 0/30 [00:00<?, ?it/s]\r  3%|▎  | 1/30"]
    assert tee.last_unshown(1) == ["[rank1]:[W1206 reducer.cpp] c10 says"]


def test_what_a_rank_left_unfinished_at_the_end_of_the_output_is_still_its_line(tmp_path, capsys):
    tee = Tee(tmp_path, distributed=True)
    with tee:
        tee.line(b"[rank0]: \r 97%|#########7| 29/30[rank1]: " + MARK.encode() + b"dpo-launch worker: last words")
        assert capsys.readouterr().out == ""
        tee.end_of_output()
    assert capsys.readouterr().out == "[rank1]: dpo-launch worker: last words\n"
    assert (tmp_path / "rank-1.log").read_bytes().decode() == "dpo-launch worker: last words"
    assert tee.last_unshown(0) == ["\r 97%|#########7| 29/30"]


RANK = """
import logging, os, sys, warnings
from launcher.worker import console
console.install()
console.say("dpo-launch worker: own line")
library = logging.getLogger("llamafactory.demo")
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("[%(levelname)s|%(name)s] >> %(message)s"))
library.addHandler(handler)
library.addHandler(logging.FileHandler(sys.argv[1]))  # a log file of the user's own: never marked
library.setLevel(logging.INFO)
library.info("Model config LlamaConfig {")
library.warning("We recommend enable mixed precision training.")
library.error("first line\\nsecond line")
warnings.warn("deprecated thing")
print("training example:")
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("supervised", [True, False], ids=["under-train", "run-by-hand"])
def test_a_rank_marks_its_own_lines_warnings_and_errors_only_under_train(supervised, tmp_path):
    env = cli_env(**({"DPO_LAUNCH_SUPERVISOR": "1:1"} if supervised else {}))
    if not supervised:
        env.pop("DPO_LAUNCH_SUPERVISOR", None)
    own_log = tmp_path / "own.log"
    result = subprocess.run([sys.executable, "-c", RANK, str(own_log)], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    mark = MARK if supervised else ""
    assert result.stdout.split("\n") == [
        f"{mark}dpo-launch worker: own line",
        "[INFO|llamafactory.demo] >> Model config LlamaConfig {",
        f"{mark}[WARNING|llamafactory.demo] >> We recommend enable mixed precision training.",
        f"{mark}[ERROR|llamafactory.demo] >> first line", f"{mark}second line",
        "training example:", ""]  # split, not splitlines: str.splitlines() breaks lines at the mark too
    [warning] = [line for line in result.stderr.split("\n") if "UserWarning" in line]
    assert warning.startswith(f"{mark}<string>:") and warning.endswith(": UserWarning: deprecated thing")
    assert own_log.read_text() == ("Model config LlamaConfig {\nWe recommend enable mixed precision training.\n"
                                   "first line\nsecond line\n")


def test_step_lines_are_read_from_the_event_files(tmp_path):
    write_scalars(tmp_path / "tensorboard" / "events.out.tfevents.1.host",
                  [(tag, step, value) for step in (5, 10) for tag, value in (
                      ("train/loss", 0.69 - step / 1000), ("train/rewards/accuracies", 0.5),
                      ("train/rewards/margins", 0.01), ("train/rewards/chosen", 0.02), ("train/rewards/rejected", 0.01),
                      ("train/learning_rate", 5e-6))] + [("eval/loss", 10, 0.7)])
    write_scalars(tmp_path / "tensorboard" / "dpo-launch" / "events.out.tfevents.1.host",
                  [("progress/max_steps", 0, 20.0)])
    state = RunState(tmp_path)
    assert new_lines(state, state.poll()) == [
        "step 5/20 · loss 0.6850 · acc 0.5000 · margin 0.0100 · chosen 0.0200 · rejected 0.0100 · lr 5.000e-06 · "
        "ETA 0:00:08",  # 2 steps/s (write_scalars: wall times 0.5 s apart per step): 15 steps to go in 7.5 s
        "step 10/20 · loss 0.6800 · acc 0.5000 · margin 0.0100 · chosen 0.0200 · rejected 0.0100 · lr 5.000e-06 · "
        "ETA 0:00:05",
        "eval at step 10/20 · loss 0.7000"]


def test_step_lines_print_what_the_run_logged_last_when_stopped(tmp_path, capsys):
    lines = StepLines(tmp_path, interval=60)  # the thread waits: only stop() reads
    write_run(tmp_path, steps=3, max_steps=3, finished=True)
    lines.stop()
    assert [line.split(" · ")[0] for line in capsys.readouterr().out.splitlines()] == [
        "step 1/3", "step 2/3", "step 3/3"]
    write_scalars(tmp_path / "tensorboard" / "events.out.tfevents.2.host", [("train/loss", 4, 0.6)])
    lines.stop()  # train calls it again on its way out: the run was read to its end once, not again
    assert capsys.readouterr().out == ""


def test_step_lines_that_cannot_read_the_run_say_where_and_end_without_stopping_it(tmp_path, capsys, monkeypatch):
    write_run(tmp_path, steps=2, max_steps=4)
    lines = StepLines(tmp_path, interval=60)

    def unreadable(self, final=False):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(RunState, "poll", unreadable)
    lines.stop()
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"dpo-launch train: cannot read the run in {tmp_path} any more (PermissionError: [Errno 13] Permission "
        "denied); training goes on without step lines: see dpo-launch monitor or TensorBoard")


def test_after_a_resume_only_the_steps_of_this_launch_are_printed(tmp_path, capsys):
    write_run(tmp_path, steps=8, max_steps=20)  # the earlier launch, rewound to its checkpoint at step 8
    lines = StepLines(tmp_path, interval=60)
    write_scalars(tmp_path / "tensorboard" / "events.out.tfevents.2.host",
                  [("train/loss", step, 0.6) for step in (9, 10)])
    lines.stop()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("dpo-launch train: steps up to 8 were logged by earlier launches (dpo-launch monitor or "
                      "TensorBoard show them); new steps follow")
    assert [line.split(" · ")[0] for line in out[1:]] == ["step 9/20", "step 10/20"]


def test_a_stopped_run_s_summary_names_the_last_checkpoint_and_how_to_resume(tmp_path):
    out = tmp_path / "my out"
    write_run(out, steps=4, max_steps=10)
    checkpoint = out / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    write_status(out, RunStatus("interrupted", 130, started_at=100.0, ended_at=165.0, detail="SIGINT"))
    (out / "dpo-launch" / "alerts.jsonl").write_text(json.dumps(
        {"rule": "reward-margin-negative", "severity": "warning", "step": 3, "message": "margin < 0",
         "hint": "check the pairs"}) + "\n")
    for rank in (0, 1):
        (out / "dpo-launch" / "logs").mkdir(parents=True, exist_ok=True)
        (out / "dpo-launch" / "logs" / f"rank-{rank}.log").write_text("")
    lines = summary_lines(out, ["dpo-launch", "train", "c.yaml", "--resume"])
    assert lines[0] == "dpo-launch train: interrupted (exit 130); 4/10 steps in 0:01:05"
    assert lines[1] == "  final:       step 4: loss 0.6960 · margin 0.0400"
    assert lines[2] == "  best:        loss 0.6960 (step 4) · margin 0.0400 (step 4)"
    assert lines[3:] == [
        "  alerts:      1",
        "    warning[reward-margin-negative] step 3: margin < 0 (check the pairs)",
        f"  model:       {checkpoint} (the last complete checkpoint; no final model: the run did not finish)",
        f"  tensorboard: {out / 'tensorboard'}   view: dpo-launch tensorboard {shlex.quote(str(out))}",
        f"  report:      dpo-launch report {shlex.quote(str(out))}   (writes {out / 'dpo-launch/report'}/report.md "
        "and plots)",
        f"  logs:        {out / 'dpo-launch/logs'} (rank-0.log, rank-1.log)   (everything the ranks printed)",
        "  resume:      dpo-launch train c.yaml --resume   (from checkpoint-4)"]


def test_a_run_that_logged_no_step_still_gets_a_summary(tmp_path):
    write_status(tmp_path, RunStatus("failed", 1, started_at=100.0, ended_at=112.0))
    lines = summary_lines(tmp_path, ["dpo-launch", "train", "c.yaml", "--resume"])
    assert lines[:3] == ["dpo-launch train: failed (exit 1); 0 steps in 0:00:12",
                         "  metrics:     none (no step was logged)", "  alerts:      none"]
    assert lines[3] == "  model:       none saved"
    assert not any(line.startswith("  resume:") for line in lines)  # nothing to resume from


def test_on_a_terminal_the_live_view_shows_from_the_launch_on(tmp_path):
    from rich.console import Console

    screen = io.StringIO()
    view = LiveView(tmp_path, Console(file=screen, force_terminal=True, width=200))
    deadline = time.monotonic() + 30
    while "starting the ranks" not in screen.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    view.stop()
    assert "dpo-launch train: starting the ranks: loading the model and the data (0:00:0" in screen.getvalue()
    assert str(tmp_path / "dpo-launch" / "logs") in screen.getvalue()


def test_a_run_that_ends_before_the_live_view_saw_a_step_still_gets_its_panel(tmp_path):
    from rich.console import Console

    screen = io.StringIO()
    view = LiveView(tmp_path, Console(file=screen, force_terminal=True, width=200))
    write_run(tmp_path, steps=3, max_steps=3, finished=True)  # the whole run, then the job's end at once
    view.stop()
    assert "dpo-launch monitor:" in screen.getvalue() and "3/3" in screen.getvalue()


def test_the_resume_command_repeats_the_config_overrides_and_flags_and_undoes_a_start_over():
    assert resume_argv("my config.yaml", ["max_steps=9"], {"nproc_per_node": 2, "nnodes": None}, "none",
                       ["spike_factor=5"], "1h", starts_over=True) == [
        "dpo-launch", "train", "my config.yaml", "max_steps=9", "overwrite_output_dir=false", "--nproc-per-node", "2",
        "--stop-on", "none", "--alert-threshold", "spike_factor=5", "--stall-timeout", "1h", "--resume"]


def test_the_resume_command_parses_back_to_the_launchs_own_arguments():
    """Every train flag that changes what the launch does survives into the resume command (a run that started
    only with --no-memory-check must not be refused when resumed)."""
    given = ["my config.yaml", "max_steps=9", "--nproc-per-node", "2", "--master-port", "29511", "--gpu-memory",
             "80GiB", "--no-memory-check", "--stop-on", "none", "--alert-threshold", "spike_factor=5",
             "--stall-timeout", "1h", "--precompute-ref", "--precompute-ref-cache", "my cache"]
    parser = build_parser(frozenset({"train"}))
    launch = vars(parse_arguments(parser, ["train", *given]))
    launch_flags = {dest: launch[dest] for dest in LAUNCH_FLAGS}
    argv = resume_argv(launch["config"], launch["overrides"], launch_flags, launch["stop_on"],
                       launch["alert_thresholds"], launch["stall_timeout"], gpu_memory_flag=launch["gpu_memory_flag"],
                       check_memory=launch["check_memory"],
                       precompute=(launch["precompute_ref"], launch["precompute_ref_cache"]))
    resumed = vars(parse_arguments(parser, argv[1:]))
    assert {key: value for key, value in resumed.items() if key != "resume"} == \
        {key: value for key, value in launch.items() if key != "resume"}
    assert (resumed["resume"], launch["resume"]) == (True, False)
