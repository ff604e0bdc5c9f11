"""A write that fails for lack of space, while the trainer saves a checkpoint or `train` writes the run manifest.

The failure is a real one from the kernel, without root: `dpo-launch train` runs under RLIMIT_FSIZE (`ulimit -f`),
so any write past the limit fails with EFBIG ("File too large") in every process of the run, exactly where a full
disk fails with ENOSPC (Python ignores SIGXFSZ, so the write returns the error instead of killing the process).
Promised: one clear line naming the file and the error, no traceback, exit non-zero, nothing half-written in the
manifest, and the previous checkpoint still resumes.
"""

from __future__ import annotations

import hashlib
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import loss_steps, workspace

from support.training import Workspace, rank_log, training_env

CHECKPOINT_LIMIT = 256 * 1024  # below the tiny model's model.safetensors (~600 kB), above every log and manifest file
MANIFEST_LIMIT = 1024  # below plan.json (~5 kB), the largest file of the run manifest


def train(ws: Workspace, *flags: str, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "launcher", "train", str(ws.config), "--no-monitor", *flags],
                          cwd=ws.root, env=training_env(), capture_output=True, text=True, timeout=600, check=False,
                          preexec_fn=limit_file_size if file_size_limit else None)


def snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory, tiny_model_dir) -> Workspace:
    """A finished 2-step run with checkpoint-2; tests copy it."""
    ws = workspace(tmp_path_factory.mktemp("disk") / "ws", tiny_model_dir, max_steps=2, save_steps=2)
    result = train(ws)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return ws


def copy_of(ws: Workspace, root: Path) -> Workspace:
    shutil.copytree(ws.root, root, symlinks=True)
    return Workspace(root, dict(ws.values))


@pytest.mark.subprocess
def test_a_checkpoint_save_that_fails_is_one_clear_line_and_the_previous_checkpoint_resumes(two_steps, tmp_path):
    ws = copy_of(two_steps, tmp_path / "ws")
    out = ws.out
    ws.write_config(max_steps=4)
    failed = train(ws, "--resume", file_size_limit=CHECKPOINT_LIMIT)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stdout + failed.stderr
    assert failed.stderr.splitlines()[-1] == (
        f"dpo-launch: training failed (exit code 1); log: {out / 'dpo-launch/logs/rank-0.log'}")
    [line] = [line for line in failed.stdout.splitlines() if "training failed on rank" in line]
    assert re.fullmatch(re.escape(
        f"dpo-launch worker: training failed on rank 0: cannot write {out}/checkpoint-4/model.safetensors (saving "
        "checkpoint-4): [Errno 27] File too large; the file size limit (ulimit -f) or the file system's largest "
        "file size was reached; ") + r"\d+\.\d MiB" + re.escape(
        f" free on the file system of {out}/checkpoint-4; the last complete checkpoint is {out}/checkpoint-2 "
        f"(`dpo-launch train --resume` continues from it) (traceback in {out}/dpo-launch/logs/crash-rank-0.txt)"),
        line)

    resumed = train(ws, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert ("dpo-launch train: --resume: resuming from checkpoint-2, the last complete checkpoint; passing over "
            "checkpoint-4: no trainer_state.json: its save did not finish") in resumed.stdout.splitlines()
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in rank_log(out)
    assert loss_steps(out) == [1, 2, 3, 4]
    assert (out / "checkpoint-4" / "trainer_state.json").is_file()


@pytest.mark.subprocess
def test_a_run_manifest_that_cannot_be_written_leaves_the_previous_one_whole_and_starts_nothing(two_steps, tmp_path):
    ws = copy_of(two_steps, tmp_path / "ws")
    before = snapshot(ws.out)
    result = train(ws, "--resume", "max_steps=4", file_size_limit=MANIFEST_LIMIT)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"dpo-launch train: error: cannot write the run manifest {ws.out / 'dpo-launch/plan.json'}: [Errno 27] File "
        "too large; nothing was started")
    assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(ws.out) == before  # every file of the old manifest (and the logs) as it was; no .tmp left


@pytest.mark.subprocess
def test_a_first_run_whose_manifest_cannot_be_written_leaves_no_manifest_file(tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, max_steps=2)
    result = train(ws, file_size_limit=MANIFEST_LIMIT)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"dpo-launch train: error: cannot write the run manifest {ws.out / 'dpo-launch/plan.json'}: [Errno 27] File "
        "too large; nothing was started")
    assert snapshot(ws.out) == {}
