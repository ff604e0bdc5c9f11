"""What `dpo-launch train` prints, not on a terminal (a pipe, as in CI): a real CPU run of the tiny model.

LLaMA-Factory's and transformers' INFO logs, the model config dumps, the tokenized example and the progress bars
go to the rank's log only; dpo-launch's own lines, warnings and errors are shown; one line per logged step (from
the event files); a summary at the end. `--verbose` shows everything.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios

import pytest

from launcher.observe.events import Scalar, read_all
from launcher.observe.monitor import fmt

from support.cli import run_cli
from support.training import make_workspace, rank_log, training_env

STEPS, LOGGING_STEPS = 12, 2
LOGGED = STEPS // LOGGING_STEPS
RUN = {"max_samples": 64, "per_device_train_batch_size": 2, "max_steps": STEPS, "logging_steps": LOGGING_STEPS,
       "save_strategy": "steps", "save_steps": 6, "report_to": "none", "plot_loss": False}
NUMBER = r"-?\d+\.\d{4}|-?\d\.\d{3}e[+-]\d\d|nan|inf|-inf"


def step_line(total: int) -> re.Pattern:
    """A step line: step/total, loss, reward accuracy, margin, chosen and rejected reward, learning rate, ETA."""
    return re.compile(rf"step (\d+)/{total} · loss (?:{NUMBER}) · acc (?:{NUMBER}) · margin (?:{NUMBER}) · "
                      rf"chosen (?:{NUMBER}) · rejected (?:{NUMBER}) · lr (?:{NUMBER}) · ETA (?:\d+:\d\d:\d\d|-)")


STEP_LINE = step_line(STEPS)
# Besides the validation lines, the step lines and the summary: the run directory line, the loss and self-test
# lines and the warnings LLaMA-Factory, transformers, trl and DeepSpeed log on a CPU machine (about 6).
OTHER_LINES_AT_MOST = 15


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory, tiny_model_dir):
    ws = make_workspace(tmp_path_factory.mktemp("console") / "my runs", tiny_model_dir, **RUN)
    return ws, run_cli("train", ws.config, cwd=ws.root)


def train_losses(out) -> dict[int, float]:
    return {e.step: e.value for e in read_all(out / "tensorboard") if isinstance(e, Scalar) and e.tag == "train/loss"}


@pytest.mark.slow
def test_not_on_a_terminal_train_prints_one_line_per_logged_step_and_hides_the_libraries_info_logs(quiet_run):
    ws, result = quiet_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert [int(STEP_LINE.fullmatch(line).group(1)) for line in steps] == list(range(2, STEPS + 1, 2)), steps
    assert len(steps) == LOGGED
    losses = sorted(train_losses(ws.out).items())
    assert [line.split(" · ")[1] for line in steps] == [f"loss {fmt(value)}" for _, value in losses]
    validation = [line for line in lines if line.startswith(("config.yaml:", "data/", "✓"))]
    summary = lines[lines.index(next(line for line in lines if line.startswith("dpo-launch train: finished"))):]
    assert len(lines) <= len(validation) + LOGGED + len(summary) + OTHER_LINES_AT_MOST, result.stdout
    for noise in ("[INFO|", "Model config LlamaConfig", "chosen_input_ids", "it/s]", "{'loss'", "***** train metrics"):
        assert noise not in result.stdout, noise
        assert noise in rank_log(ws.out), noise  # all of it is in the rank's log
    assert "\x1e" not in result.stdout + result.stderr + rank_log(ws.out)  # the console marks never show
    assert result.stderr == ""


@pytest.mark.slow
def test_warnings_from_llamafactory_and_dpo_launchs_own_lines_are_still_shown(quiet_run):
    ws, result = quiet_run
    lines = result.stdout.splitlines()
    [warning] = [line for line in lines if "llamafactory.hparams.parser" in line]
    assert warning.startswith("[WARNING|") and warning.endswith(">> We recommend enable mixed precision training.")
    assert "dpo-launch worker: training pref_loss sigmoid: as LLaMA-Factory runs it" in lines
    assert any(line.startswith("dpo-launch worker: loss self-test passed: sigmoid first-batch loss") for line in lines)
    assert f"dpo-launch train: run directory {ws.out}; TensorBoard: tensorboard --logdir {ws.out / 'tensorboard'}" \
        in lines


@pytest.mark.slow
def test_the_run_ends_with_a_summary_of_its_status_metrics_alerts_and_where_everything_is(quiet_run):
    ws, result = quiet_run
    out, quoted = ws.out, shlex.quote(str(ws.out))
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("dpo-launch train: finished"))
    summary = lines[start:]
    assert re.fullmatch(rf"dpo-launch train: finished; {STEPS}/{STEPS} steps in \d+:\d\d:\d\d", summary[0])
    losses = train_losses(out)
    assert summary[1].startswith(f"  final:       step {STEPS}: loss {fmt(losses[STEPS])} · acc ")
    best_step, best = min(losses.items(), key=lambda item: item[1])
    assert summary[2].startswith(f"  best:        loss {fmt(best)} (step {best_step}) · acc ")
    assert summary[3:] == [
        "  alerts:      none",
        f"  model:       {out} (model.safetensors)",
        f"  tensorboard: {out / 'tensorboard'}   view: dpo-launch tensorboard {quoted}",
        f"  report:      dpo-launch report {quoted}   (writes {out / 'dpo-launch/report'}/report.md and plots)",
        f"  logs:        {out / 'dpo-launch/logs/rank-0.log'}   (everything the ranks printed)",
    ]


@pytest.mark.slow
def test_verbose_shows_everything_the_ranks_print(tmp_path, tiny_model_dir):
    ws = make_workspace(tmp_path / "ws", tiny_model_dir, **{**RUN, "max_steps": 2, "save_strategy": "no"})
    result = run_cli("train", ws.config, "--verbose", cwd=ws.root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in ("[INFO|", "Model config LlamaConfig", "chosen_input_ids", "***** train metrics"):
        assert line in result.stdout, line
    assert [line for line in result.stdout.splitlines() if step_line(2).fullmatch(line)]
    assert "\x1e" not in result.stdout + rank_log(ws.out)
    assert result.stdout.splitlines()[-1].startswith("  logs:        ")


def run_on_a_terminal(args: list[str], cwd, timeout: float = 600) -> tuple[int, str]:
    """`dpo-launch ARGS` with stdout and stderr a pseudo-terminal (what an interactive shell gives it)."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "launcher", *args], cwd=cwd, env=training_env(),
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
    os.close(secondary)
    screen = bytearray()
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    return proc.wait(timeout=timeout), screen.decode("utf-8", "replace")


@pytest.mark.slow
def test_on_a_terminal_the_live_view_starts_at_launch_and_the_libraries_info_logs_stay_in_the_log(
        tmp_path, tiny_model_dir):
    ws = make_workspace(tmp_path / "ws", tiny_model_dir, **{**RUN, "max_steps": 4, "save_strategy": "no"})
    code, screen = run_on_a_terminal(["train", str(ws.config)], ws.root)
    assert code == 0, screen[-3000:]
    starting = screen.find("starting the ranks: loading the model and the data")
    panel = screen.find("dpo-launch monitor:")
    assert 0 <= starting < panel, screen[-3000:]  # the view is up before the first step is logged
    assert "step 4/4" in screen and "dpo-launch train: finished; 4/4 steps in " in screen
    assert "[INFO|" not in screen and "[INFO|" in rank_log(ws.out)
