"""`dpo-launch train` end to end on one CPU process: a real LLaMA-Factory run on the tiny model, the run directory,
the output_dir guard and --resume."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from launcher.observe.events import Scalar, read_all

from support.cli import run_cli
from support.training import Workspace, make_workspace, rank_log, training_env

# On top of fixtures_training.TRAIN_DEFAULTS: checkpoints every 2 steps, and report_to none to show that
# `train` adds tensorboard by itself.
RUN = {"max_samples": 64, "per_device_train_batch_size": 4, "max_steps": 4, "save_strategy": "steps",
       "save_steps": 2, "report_to": "none", "plot_loss": False}


def workspace(root: Path, model_dir: Path, **changes) -> Workspace:
    """The shared demo workspace (tests/fixtures_training.py) with this file's run settings."""
    return make_workspace(root, model_dir, **{**RUN, **changes})


def loss_steps(output_dir: Path) -> list[int]:
    """The steps at which `train/loss` reached TensorBoard, over every event file of the run."""
    return sorted(e.step for e in read_all(output_dir / "tensorboard")
                  if isinstance(e, Scalar) and e.tag == "train/loss")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    """One real 4-step run, from a directory whose name has a space; the tests below read it or copy it."""
    ws = workspace(tmp_path_factory.mktemp("train") / "my runs", tiny_model_dir)
    return ws, run_cli("train", ws.config, cwd=ws.root)


@pytest.mark.slow
def test_a_single_process_run_trains_and_leaves_checkpoints_and_tensorboard_events(finished_run):
    ws, result = finished_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = ws.out
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert loss_steps(out) == [1, 2, 3, 4]
    assert f"dpo-launch train: run directory {out}; TensorBoard: tensorboard --logdir {out / 'tensorboard'}" \
        in result.stdout


@pytest.mark.slow
def test_the_run_directory_records_the_resolved_config_versions_and_dataset_fingerprints(finished_run):
    ws, _ = finished_run
    run_dir = ws.out / "dpo-launch"
    resolved = json.loads((run_dir / "resolved_config.json").read_text())
    assert resolved["output_dir"] == str(ws.out)
    assert resolved["report_to"] == ["tensorboard"]
    assert "overwrite_output_dir" not in resolved and "resume_from_checkpoint" not in resolved
    assert yaml.safe_load((run_dir / "resolved_config.yaml").read_text()) == resolved
    versions = json.loads((run_dir / "versions.json").read_text())
    assert (versions["llamafactory"], versions["trl"]) == ("0.9.5", "0.24.0")
    data_file = ws.root / "data" / "demo_dpo.jsonl"
    assert json.loads((run_dir / "datasets.json").read_text())["datasets"]["demo_dpo"] == {"files": [
        {"path": str(data_file), "bytes": data_file.stat().st_size,
         "sha256": hashlib.sha256(data_file.read_bytes()).hexdigest()}]}
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["launch"]["nodes"][0]["argv"][1:] == ["-m", "launcher.worker", "--args-file",
                                                      str(run_dir / "resolved_config.json")]
    assert json.loads((run_dir / "runtime.json").read_text())["reference"]["kind"] == plan["reference"]["kind"]
    assert "loss self-test" in (run_dir / "logs" / "rank-0.log").read_text()


@pytest.mark.subprocess
def test_an_output_dir_with_checkpoints_is_neither_resumed_nor_overwritten_without_being_asked(finished_run, cli):
    ws, _ = finished_run
    before = sorted(p.name for p in ws.out.iterdir())
    result = cli("train", ws.config, cwd=ws.root)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"dpo-launch train: error: {ws.out} already holds a previous run (checkpoint-2, checkpoint-4, "
        "model.safetensors); pass --resume to continue from checkpoint-4 or --overwrite to start over "
        "(or choose another output_dir)")
    assert sorted(p.name for p in ws.out.iterdir()) == before


@pytest.mark.subprocess
def test_resume_continues_from_the_last_checkpoint_without_duplicated_or_missing_steps(finished_run, cli, tmp_path):
    ws, _ = finished_run
    copy = Workspace(tmp_path / "resume", dict(ws.values))
    shutil.copytree(ws.root, copy.root, symlinks=True)
    copy.write_config(max_steps=6)
    result = cli("train", copy.config, "--resume", cwd=copy.root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Resuming training from checkpoint with epoch 0 and global step 4" in rank_log(copy.out)
    resolved = json.loads((copy.out / "dpo-launch" / "resolved_config.json").read_text())
    assert resolved["resume_from_checkpoint"] == str(copy.out / "checkpoint-4")
    assert loss_steps(copy.out) == [1, 2, 3, 4, 5, 6]


@pytest.mark.subprocess
def test_resume_without_a_checkpoint_says_there_is_nothing_to_resume(tmp_path, tiny_model_dir, cli):
    ws = workspace(tmp_path / "ws", tiny_model_dir)
    result = cli("train", ws.config, "--resume", cwd=ws.root)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"dpo-launch train: error: --resume: no checkpoint-N directory in {ws.out} to resume from")


@pytest.mark.subprocess
def test_a_config_with_validation_errors_is_refused_before_anything_is_written(tmp_path, tiny_model_dir, cli):
    ws = workspace(tmp_path / "ws", tiny_model_dir, pref_loss="sigmod")
    result = cli("train", ws.config, cwd=ws.root)
    assert result.returncode == 1
    assert "error[enum]: pref_loss: expected one of" in result.stdout
    assert result.stderr == f"dpo-launch train: {ws.config} has errors; nothing was started\n"
    assert not ws.out.exists()


@pytest.mark.subprocess
def test_mixed_precision_on_a_machine_without_a_gpu_is_refused_with_the_key_located(tmp_path, tiny_model_dir, cli):
    ws = workspace(tmp_path / "ws", tiny_model_dir)
    result = cli("train", ws.config, "bf16=true", cwd=ws.root, env=training_env(CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 1
    assert ("<command line>: error[needs-gpu]: bf16: true needs a CUDA GPU, but this machine has none visible (or "
            "torch is a CPU-only build) (set bf16: false (CPU trains in fp32) or run on a GPU machine)") \
        in result.stdout.splitlines()
    assert not ws.out.exists()


@pytest.mark.subprocess
def test_overwrite_starts_over_and_drops_the_old_checkpoints_and_events(finished_run, cli, tmp_path):
    ws, _ = finished_run
    copy = Workspace(tmp_path / "overwrite", dict(ws.values))
    shutil.copytree(ws.root, copy.root, symlinks=True)
    copy.write_config(max_steps=2)
    result = cli("train", copy.config, "--overwrite", cwd=copy.root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for old in ("checkpoint-2", "checkpoint-4", "tensorboard", "dpo-launch"):
        assert f"dpo-launch train: --overwrite: removed {copy.out / old}" in result.stdout.splitlines()
    assert sorted(p.name for p in copy.out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert loss_steps(copy.out) == [1, 2]
    assert "checkpoint-4" not in (copy.out / "dpo-launch" / "logs" / "rank-0.log").read_text()
