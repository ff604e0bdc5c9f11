"""Faults during real training runs: a rank killed with SIGKILL, Ctrl-C and SIGTERM on `dpo-launch train`.
Every process of the run must be gone afterwards, with the exit code and message the user is promised;
an interrupted run leaves a checkpoint, and `--resume` after either fault continues at the right step with
each step in TensorBoard exactly once."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import loss_steps, workspace

from launcher.layout import complete_checkpoints
from launcher.observe.events import masked_crc32c
from launcher.run.rewind import rewind_file, rewind_json_lines

from support.cli import run_cli
from support.training import rank_log, training_env

LONG_RUN = {"max_steps": 5000, "save_strategy": "no"}  # long enough that a fault always lands mid-training


def cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (zombies have none, so they do not count)."""
    return [int(p.name) for p in Path("/proc").glob("[0-9]*") if text in cmdline(p.name)]


def rank_pid(out: Path, rank: int) -> int:
    for pid in processes_mentioning(str(out / "dpo-launch" / "resolved_config.json")):
        if "launcher.run.torchrun_quiet" in cmdline(str(pid)):  # torchrun itself, not a rank
            continue
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return pid
    raise AssertionError(f"no worker process for rank {rank}")


def start_train(root: Path, ws, *flags: str) -> subprocess.Popen:
    """`dpo-launch train` in the background, its output in ROOT/stdout.txt and ROOT/stderr.txt."""
    with open(root / "stdout.txt", "w") as stdout, open(root / "stderr.txt", "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "launcher", "train", str(ws.config), *flags], cwd=ws.root,
                                env=training_env(), stdout=stdout, stderr=stderr)


def wait_for_training(proc: subprocess.Popen, out: Path, root: Path, timeout: float = 240) -> None:
    """Until rank 0 has logged its first optimizer steps (trainer_log.jsonl), or fail with the run's output."""
    deadline = time.monotonic() + timeout
    log = out / "trainer_log.jsonl"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"train exited early ({proc.returncode}): {(root / 'stderr.txt').read_text()[-3000:]}")
        if log.exists() and log.read_text().count("\n") >= 2:
            return
        time.sleep(0.3)
    proc.kill()
    pytest.fail("training did not start in time")


def wait_until_gone(text: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.subprocess
def test_a_rank_killed_with_sigkill_stops_the_run_and_the_launcher_names_the_rank_and_its_log(tmp_path,
                                                                                                tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, **LONG_RUN)
    out = ws.out
    proc = start_train(tmp_path, ws, "--nproc-per-node", "2")
    wait_for_training(proc, out, tmp_path)
    os.kill(rank_pid(out, 1), signal.SIGKILL)
    assert wait_until_gone(str(tmp_path), seconds=60) == []
    assert proc.wait(timeout=60) == 1  # the launcher sweeps and reaps after the ranks are gone: slow when loaded
    last = (tmp_path / "stderr.txt").read_text().splitlines()[-1]
    assert last.startswith("dpo-launch: rank 1 failed (exit code -9, killed by SIGKILL) on host ")
    log = out / "dpo-launch" / "logs" / "rank-1.log"
    assert last.endswith(f"; the other ranks were stopped; its log: {log}")
    assert "world size: 2" in log.read_text()


@pytest.mark.parametrize("sig, code, flags", [
    (signal.SIGINT, 130, ("--nproc-per-node", "2")),
    (signal.SIGTERM, 143, ()),
    (signal.SIGHUP, 129, ("--nproc-per-node", "2")),  # what a closed terminal or SSH session sends
], ids=["ctrl-c-two-ranks", "sigterm-one-process", "sighup-two-ranks"])
@pytest.mark.subprocess
def test_an_interrupted_run_saves_a_checkpoint_exits_with_the_signals_code_and_resumes_from_it(
        tmp_path, tiny_model_dir, sig, code, flags):
    ws = workspace(tmp_path / "ws", tiny_model_dir, **LONG_RUN)
    out = ws.out
    proc = start_train(tmp_path, ws, *flags)
    wait_for_training(proc, out, tmp_path)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == code
    assert processes_mentioning(str(tmp_path)) == []
    output = (tmp_path / "stdout.txt").read_text() + (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in output  # neither the ranks nor torchrun (launcher.run.torchrun_quiet) print one
    assert (tmp_path / "stderr.txt").read_text().splitlines()[-1] == (
        f"dpo-launch: interrupted by {signal.Signals(sig).name}; training stopped; logs in {out / 'dpo-launch/logs'}")
    [checkpoint] = complete_checkpoints(out)  # save_strategy is "no": the signal alone made it
    step = int(checkpoint.name.split("-")[1])
    prefix = "[rank0]: " if flags else ""
    assert f"{prefix}dpo-launch worker: interrupted by {signal.Signals(sig).name} (rank 0); saved {checkpoint}" \
        in (tmp_path / "stdout.txt").read_text().splitlines()
    if flags:  # every rank stopped at the same step, and says so on the console
        rank_1 = [line for line in (tmp_path / "stdout.txt").read_text().splitlines() if line.startswith("[rank1]")]
        rank_1_log = (out / "dpo-launch" / "logs" / "rank-1.log").read_text().splitlines()[-15:]
        assert f"[rank1]: dpo-launch worker: interrupted by {signal.Signals(sig).name} (rank 1); saved {checkpoint}" \
            in rank_1, "\n".join(["rank 1 on the console:", *rank_1, "the end of rank-1.log:", *rank_1_log])
    resume = shlex.join(["dpo-launch", "train", str(ws.config), *flags, "--resume"])  # the summary's last line
    assert (tmp_path / "stdout.txt").read_text().splitlines()[-1] == \
        f"  resume:      {resume}   (from {checkpoint.name})"
    status = json.loads((out / "dpo-launch" / "status.json").read_text())
    assert (status["state"], status["exit_code"]) == ("interrupted", code)
    assert step >= 2 and loss_steps(out) == list(range(1, step + 1))
    assert not (out / "model.safetensors").exists()  # an interrupted run is not a finished one

    # Resumed with as many ranks as it ran with: on CPU that needs launcher.worker.upstream_fixes (transformers 5.6
    # loads optimizer.pt with map_location "cpu:0" when world_size > 1, which torch.load rejects).
    ws.write_config(max_steps=step + 2)
    resumed = run_cli("train", ws.config, "--resume", "--no-monitor", *flags, cwd=ws.root, env=training_env())
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # any epoch: with two ranks an epoch of the 64 samples is 8 steps, so the signal may land in the second one
    assert re.search(rf"Resuming training from checkpoint with epoch \d+ and global step {step}\n", rank_log(ws.out))
    assert loss_steps(out) == list(range(1, step + 3))


def event_record(step: int) -> bytes:
    """One framed TFRecord holding an Event with wall_time 1.5 and `step` (protobuf fields 1 and 2)."""
    data = b"\x09" + struct.pack("<d", 1.5) + (b"\x10" + bytes([step]) if step else b"")
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def test_rewinding_an_event_file_keeps_earlier_records_byte_for_byte_and_drops_an_unfinished_one(tmp_path):
    path = tmp_path / "events.out.tfevents.1"
    kept = event_record(0) + event_record(1) + event_record(2)
    path.write_bytes(kept + event_record(3) + event_record(2) + event_record(4)[:-3])
    rewound = rewind_file(path, 2)
    assert (rewound.dropped, rewound.kept, path.read_bytes()) == (2, 4, kept + event_record(2))
    assert rewind_file(path, 2).dropped == 0  # nothing more to drop: the file is not rewritten


def test_rewinding_a_step_log_keeps_earlier_and_stepless_lines_and_drops_an_unfinished_last_line(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    kept = b'{"current_steps": 1}\n{"current_steps": 2, "loss": 0.69}\nnot json\n{"other": 5}\n'
    path.write_bytes(kept + b'{"current_steps": 3}\n{"current_steps": 2}\n' + b'{"current_st')
    rewound = rewind_json_lines(path, 2, "current_steps")
    assert (rewound.dropped, rewound.kept, path.read_bytes()) == (2, 5, kept + b'{"current_steps": 2}\n')
    before = path.stat().st_mtime_ns
    assert rewind_json_lines(path, 2, "current_steps").dropped == 0
    assert path.stat().st_mtime_ns == before  # nothing to drop: the file is not rewritten


def worker_pid(out: Path) -> int:
    """The single-process worker (no torchrun) of the run writing into `out`."""
    [pid] = [pid for pid in processes_mentioning(str(out / "dpo-launch" / "resolved_config.json"))
             if "launcher.worker" in cmdline(str(pid))]
    return pid


def freeze_with_steps_past_the_last_checkpoint(pid: int, out: Path, timeout: float = 120) -> tuple[int, int]:
    """SIGSTOP the worker at a moment when TensorBoard holds steps after its last complete checkpoint;
    returns (last logged step, last checkpoint step)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os.kill(pid, signal.SIGSTOP)
        logged = max(loss_steps(out), default=0)
        saved = complete_checkpoints(out)
        last_saved = int(saved[-1].name.split("-")[1]) if saved else 0
        if last_saved and logged > last_saved:
            return logged, last_saved
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("never caught the worker between a logged step and the next checkpoint")


@pytest.mark.subprocess
def test_resume_after_kill_9_drops_the_steps_logged_after_the_last_checkpoint_from_tensorboard(tmp_path,
                                                                                                 tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, max_steps=5000, save_steps=3, save_total_limit=2)
    out = ws.out
    proc = start_train(tmp_path, ws)
    wait_for_training(proc, out, tmp_path)
    pid = worker_pid(out)
    logged, saved = freeze_with_steps_past_the_last_checkpoint(pid, out)
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == 137
    assert (tmp_path / "stderr.txt").read_text().splitlines()[-1] == (
        f"dpo-launch: training failed (exit code 137, killed by SIGKILL); log: {out / 'dpo-launch/logs/rank-0.log'}")
    assert loss_steps(out) == list(range(1, logged + 1))

    ws.write_config(max_steps=logged + 2)
    resumed = run_cli("train", ws.config, "--resume", "--no-monitor", cwd=ws.root, env=training_env())
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"Resuming training from checkpoint with epoch 0 and global step {saved}" in rank_log(ws.out)
    [rewound] = [line for line in resumed.stdout.splitlines() if "TensorBoard record(s) after step" in line]
    assert rewound.startswith("dpo-launch train: --resume: dropped ")
    assert f" TensorBoard record(s) after step {saved} from {out / 'tensorboard'}/events.out.tfevents." in rewound
    assert loss_steps(out) == list(range(1, logged + 3))  # each step once: no duplicate, none missing
    # LF's own log too (its plot_loss draws from it); its last line, the run's summary, has no `loss`
    lines = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [line["current_steps"] for line in lines if "loss" in line] == list(range(1, logged + 3))


# --- --stop-on: an alert that ends the run, and the flags' usage errors ------------------------------------

@pytest.mark.subprocess
@pytest.mark.parametrize("flags, stopped", [((), True), (("--stop-on", "none"), False)], ids=["default", "none"])
def test_a_nan_run_stops_at_step_1_with_a_checkpoint_unless_stop_on_is_none(tmp_path, tiny_model_dir, flags, stopped):
    # pref_beta 1e38 overflows the first step's gradient: grad_norm is NaN at step 1 (loss-not-finite fires)
    ws = workspace(tmp_path / "ws", tiny_model_dir, pref_beta=1e38, max_steps=4, save_strategy="no")
    result = run_cli("train", ws.config, "--no-monitor", *flags, cwd=ws.root, env=training_env())
    # a stop by the alert exits EXIT_ALERT_STOP (4), not 0 (issue 11, item 10); with --stop-on none it finishes
    assert result.returncode == (4 if stopped else 0), result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in ws.out.glob("checkpoint-*")) == (["checkpoint-1"] if stopped else [])
    assert loss_steps(ws.out) == ([1] if stopped else [1, 2, 3, 4])
    assert ("dpo-launch: stopping the run at step 1 because of loss-not-finite (--stop-on); saving a checkpoint "
            "first" in result.stdout + result.stderr) == stopped
    assert "error[loss-not-finite] step 1: " in result.stdout + result.stderr  # reported either way


@pytest.mark.subprocess
def test_stop_on_and_alert_thresholds_reach_the_worker(tmp_path, tiny_model_dir):
    # learning_rate 1e-9: the loss stays at ln 2; with the thresholds lowered, loss-stuck-at-ln2 fires at step 3
    ws = workspace(tmp_path / "ws", tiny_model_dir, learning_rate=1e-9, max_steps=8, save_strategy="no")
    result = run_cli("train", ws.config, "--no-monitor", "--stop-on", "loss-stuck-at-ln2", "--alert-threshold",
                     "ln2_min_steps=3", "--alert-threshold", "window=3", cwd=ws.root, env=training_env())
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-3000:]  # stopped by the alert
    assert sorted(p.name for p in ws.out.glob("checkpoint-*")) == ["checkpoint-3"]
    assert loss_steps(ws.out) == [1, 2, 3]


@pytest.mark.parametrize("flags, message", [
    (("--stop-on", "loss-not-finit"), ("--stop-on: expected one of loss-not-finite, margins-near-zero, "
     "accuracy-saturated-early, loss-stuck-at-ln2, likelihood-displacement, rewards-both-falling, "
     "eval-overoptimization, eval-loss-rising, grad-norm-spike "
     "(or 'none') but got 'loss-not-finit' (did you mean 'loss-not-finite'?)")),
    (("--alert-threshold", "spike_factor=x"), ("--alert-threshold: alert threshold 'spike_factor=x': 'x' is not a "
     "number")),
], ids=["stop-on", "alert-threshold"])
@pytest.mark.subprocess
def test_a_bad_stop_on_or_alert_threshold_is_a_usage_error_before_anything_runs(tmp_path, tiny_model_dir, flags,
                                                                                 message):
    ws = workspace(tmp_path / "ws", tiny_model_dir)
    result = run_cli("train", ws.config, *flags, cwd=ws.root)
    assert (result.returncode, result.stderr, result.stdout) == (2, f"dpo-launch: error: {message}\n", "")
    assert not ws.out.exists()
