"""The launcher's own faults, on real runs: `dpo-launch train` killed with SIGKILL (its ranks stop on their own, with
a checkpoint, and nothing dies of a broken pipe) and a rank that stops moving (SIGSTOP: the stall watch names it,
every rank dumps its stack, the job ends with exit 5). The stall watch's logic and `--stall-timeout`'s parsing are
tested in process below."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import loss_steps, workspace
from test_train_faults import LONG_RUN, processes_mentioning, rank_pid, start_train, wait_for_training, wait_until_gone

from launcher.commands.train import parse_duration
from launcher.layout import complete_checkpoints
from launcher.lifeline import TRAINING, Heartbeat, this_host, write_heartbeat
from launcher.run.stall import StallWatch, dump_stacks

from support.cli import run_main
from support.training import training_env

GONE_WITHIN = 120  # seconds: generous for a loaded 2-core machine; the ranks check their launcher every second


def status(out: Path) -> dict:
    return json.loads((out / "dpo-launch" / "status.json").read_text())


def lock_is_free(out: Path, seconds: float = 10) -> bool:
    """Whether the run's lock can be taken (within `seconds`: a process that has just exited, its command line
    already gone, may still be closing its files)."""
    deadline = time.monotonic() + seconds
    with open(out / "dpo-launch" / "lock", "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.2)
                continue
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True


@pytest.mark.parametrize("flags", [("--nproc-per-node", "2"), ()], ids=["two-ranks", "one-process"])
@pytest.mark.subprocess
def test_ranks_whose_launcher_is_killed_save_a_checkpoint_stop_and_record_the_lost_launcher(tmp_path, tiny_model_dir,
                                                                                            flags):
    ws = workspace(tmp_path / "ws", tiny_model_dir, **LONG_RUN)
    out = ws.out
    proc = start_train(tmp_path, ws, *flags)
    wait_for_training(proc, out, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert wait_until_gone(str(tmp_path), seconds=GONE_WITHIN) == [], "the ranks trained on without their launcher"
    print(f"every process of the run gone {time.monotonic() - killed_at:.1f} s after the launcher's SIGKILL")

    [checkpoint] = complete_checkpoints(out)  # save_strategy is "no": the lost launcher alone made it
    step = int(checkpoint.name.split("-")[1])
    assert step >= 2 and loss_steps(out) == list(range(1, step + 1))
    ranks = 2 if flags else 1
    for rank in range(ranks):
        log = (out / "dpo-launch" / "logs" / f"rank-{rank}.log").read_text()
        assert f"dpo-launch worker: stopped: its launcher was lost (rank {rank}); saved {checkpoint}" in log
        assert "BrokenPipeError" not in log
    recorded = status(out)
    assert (recorded["state"], recorded["exit_code"], recorded["extra"]["checkpoint"]) == (
        "launcher-lost", 129, str(checkpoint))
    assert recorded["detail"] == f"the launcher died; rank 0 stopped on its own: saved {checkpoint}"
    assert lock_is_free(out)  # released with the last process of the run: no stale lock


@pytest.mark.subprocess
def test_a_stopped_rank_is_named_every_rank_dumps_its_stack_and_the_job_exits_5(tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, **LONG_RUN)
    out = ws.out
    proc = start_train(tmp_path, ws, "--nproc-per-node", "2", "--stall-timeout", "15s")
    wait_for_training(proc, out, tmp_path)
    stopped = rank_pid(out, 1)
    os.kill(stopped, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        assert proc.wait(timeout=240) == 5
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGCONT)  # whatever happened, let it be killed
    print(f"the job ended {time.monotonic() - stopped_at:.1f} s after rank 1 was stopped (--stall-timeout 15s)")
    assert wait_until_gone(str(tmp_path), seconds=30) == []

    stderr = (tmp_path / "stderr.txt").read_text().splitlines()
    [alert] = [line for line in stderr if line.startswith("dpo-launch: error[rank-stalled]")]
    assert "rank 1 made no training progress for " in alert
    assert alert.endswith("; dumping every rank's Python stack into its log and stopping the job")
    assert any(line.startswith(f"dpo-launch:   rank 1 (pid {stopped} on {this_host()}): last step ") and
               line.endswith("stopped (SIGSTOP or job control)") for line in stderr)
    assert stderr[-1].startswith("dpo-launch: stalled: rank 1 made no training progress for ")
    assert stderr[-1].endswith(f"; every rank's Python stack is in its log; the job was stopped (exit 5); logs in "
                               f"{out / 'dpo-launch/logs'}")
    for rank in (0, 1):  # faulthandler's dump: every thread, the training loop's frames included
        log = (out / "dpo-launch" / "logs" / f"rank-{rank}.log").read_text()
        assert "(most recent call first):" in log and 'File "' in log and "in train" in log, log[-2000:]
    records = [json.loads(line) for line in (out / "dpo-launch" / "alerts.jsonl").read_text().splitlines()]
    # the tiny model's health alerts of the steps before the stall may be there too; the stall is recorded once
    [record] = [record for record in records if record["rule"] == "rank-stalled"]
    assert (record["rule"], record["severity"], record["values"]["ranks"]) == ("rank-stalled", "error", [1])
    assert (status(out)["state"], status(out)["exit_code"]) == ("stalled", 5)
    assert processes_mentioning(str(tmp_path)) == []


BUSY_THREADS = r"""
import faulthandler, signal, sys, threading
log = open(sys.argv[1], "a")
faulthandler.register(signal.SIGUSR1, file=log, all_threads=True)
def spin():
    while True:
        sum(range(1000))
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
print(threading.main_thread().ident, flush=True)
spin()
"""


@pytest.mark.subprocess
def test_a_stopped_ranks_stack_dump_is_taken_by_its_main_thread(tmp_path):
    """A process-wide SIGUSR1 to a stopped process is handled by whichever thread runs first after SIGCONT, and a
    dump taken from another thread walks the training loop's frames while they change: a full run's rank log once
    ended mid-dump ('File '). Four busy threads besides the main one: without the thread-directed signal the main
    thread takes all five dumps about once in 3000 tries."""
    for attempt in range(5):
        log = tmp_path / f"try-{attempt}" / "rank-0.log"
        log.parent.mkdir()
        child = subprocess.Popen([sys.executable, "-c", BUSY_THREADS, str(log)], stdout=subprocess.PIPE, text=True)
        try:
            main_thread = int(child.stdout.readline())
            os.kill(child.pid, signal.SIGSTOP)
            dump_stacks([child.pid], log.parent, wait=3.0)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
        dump = log.read_text()
        assert f"Current thread 0x{main_thread:016x} (most recent call first):" in dump, dump
        assert dump.count("(most recent call first):") == 5 and dump.rstrip().endswith("in <module>"), dump


@pytest.mark.subprocess
def test_a_launcher_started_under_nohup_trains_on_through_a_hangup(tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, max_steps=300, save_strategy="no")
    with open(tmp_path / "stdout.txt", "w") as stdout, open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(["nohup", sys.executable, "-m", "launcher", "train", str(ws.config), "--no-monitor"],
                                cwd=ws.root, env=training_env(), stdout=stdout, stderr=stderr)
    wait_for_training(proc, ws.out, tmp_path)
    proc.send_signal(signal.SIGHUP)
    logged_at_hangup = max(loss_steps(ws.out), default=0)
    assert proc.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    assert logged_at_hangup < 300 and loss_steps(ws.out) == list(range(1, 301))
    assert status(ws.out)["state"] == "finished"


# --- in process: the stall watch's decisions and the flag -------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def beat(out: Path, rank: int, supervisor: str, step: int, count: int, pid: int = 999999, phase: str = TRAINING):
    write_heartbeat(out / "dpo-launch" / "heartbeat" / f"rank-{rank}.json",
                    Heartbeat(rank, pid, "another-host", supervisor, phase, step, count, time.time()))


def test_the_stall_watch_fires_only_after_the_timeout_without_progress_and_blames_the_rank_that_is_behind(tmp_path):
    clock = Clock()
    watch = StallWatch(tmp_path, "1:5", timeout=30, local_ranks=2, clock=clock)
    assert watch.check() is None  # nothing has started training: not armed
    beat(tmp_path, 0, "1:5", step=7, count=1)
    beat(tmp_path, 1, "1:5", step=6, count=1)
    beat(tmp_path, 2, "other:launcher", step=0, count=1)  # another node's or an earlier launch's rank: ignored
    assert watch.check() is None
    clock.now += 20
    beat(tmp_path, 0, "1:5", step=8, count=2)
    assert watch.check() is None
    clock.now += 11  # rank 1 still for 31 s, rank 0 for 11 s
    stall = watch.check()
    assert (stall.ranks, stall.step, round(stall.seconds)) == ([1], 6, 31)
    assert stall.message() == "rank 1 made no training progress for 31 s (last step 6)"
    assert stall.details == ["rank 1 (pid 999999 on another-host): last step 6, still for 31 s, state unknown"]
    assert stall.pids == []  # not our children: never signalled


def test_the_stall_watch_names_every_still_rank_when_none_is_behind_and_counts_ranks_that_never_reported(tmp_path):
    clock = Clock()
    watch = StallWatch(tmp_path, "1:5", timeout=30, local_ranks=3, clock=clock)
    beat(tmp_path, 0, "1:5", step=4, count=1)
    beat(tmp_path, 1, "1:5", step=4, count=1)
    watch.check()
    clock.now += 31
    stall = watch.check()
    assert stall.ranks == [0, 1]
    assert stall.details[-1] == "1 of the 3 ranks on this node never reported"


@pytest.mark.parametrize("value, message", [
    ("soon", "--stall-timeout: expected a duration such as 90, 90s, 30m or 1h30m (or 'off') but got 'soon'"),
    ("0", "--stall-timeout: must be longer than 0 but got '0' (use 'off' to turn the watch off)"),
])
def test_a_stall_timeout_that_is_not_a_duration_is_a_usage_error(tmp_path, value, message):
    result = run_main("train", tmp_path / "config.yaml", "--stall-timeout", value, cwd=tmp_path)
    assert (result.returncode, result.stderr, result.stdout) == (2, f"dpo-launch: error: {message}\n", "")


@pytest.mark.parametrize("value, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2.5m", 150),
                                            ("off", None)])
def test_stall_timeout_takes_seconds_or_units(value, seconds):
    assert parse_duration(value) == seconds
