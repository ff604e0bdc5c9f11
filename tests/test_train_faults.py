"""Faults during real training runs: a rank killed with SIGKILL, Ctrl-C and SIGTERM on `dpo-launch train`.
Every process of the run must be gone afterwards, with the exit code and message the user is promised."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_training import training_env
from test_train import workspace

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
        if "torch.distributed.run" in cmdline(str(pid)):
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


def test_a_rank_killed_with_sigkill_stops_the_run_and_the_launcher_names_the_rank_and_its_log(tmp_path,
                                                                                                tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, **LONG_RUN)
    out = ws.out
    proc = start_train(tmp_path, ws, "--nproc-per-node", "2")
    wait_for_training(proc, out, tmp_path)
    os.kill(rank_pid(out, 1), signal.SIGKILL)
    assert wait_until_gone(str(tmp_path), seconds=30) == []
    assert proc.wait(timeout=5) == 1
    last = (tmp_path / "stderr.txt").read_text().splitlines()[-1]
    assert last.startswith("dpo-launch: rank 1 failed (exit code -9, killed by SIGKILL) on host ")
    log = out / "dpo-launch" / "logs" / "rank-1.log"
    assert last.endswith(f"; the other ranks were stopped; its log: {log}")
    assert "world size: 2" in log.read_text()


@pytest.mark.parametrize("sig, code, flags", [
    (signal.SIGINT, 130, ("--nproc-per-node", "2")),
    (signal.SIGTERM, 143, ()),
], ids=["ctrl-c-two-ranks", "sigterm-one-process"])
def test_an_interrupted_launcher_stops_every_rank_and_exits_with_the_signals_code(tmp_path, tiny_model_dir, sig,
                                                                                    code, flags):
    ws = workspace(tmp_path / "ws", tiny_model_dir, **LONG_RUN)
    out = ws.out
    proc = start_train(tmp_path, ws, *flags)
    wait_for_training(proc, out, tmp_path)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == code
    assert processes_mentioning(str(tmp_path)) == []
    assert (tmp_path / "stderr.txt").read_text().splitlines()[-1] == (
        f"dpo-launch: interrupted by {signal.Signals(sig).name}; training stopped; logs in {out / 'dpo-launch/logs'}")
