"""`--resume` continues what the run did, and the run directory keeps its whole history: a resume with another
config or other data is refused with the differences listed unless `--allow-changes`; every launch is appended to
launches.jsonl; a checkpoint is complete only when its trainer_state.json parses and its weights exist, and the
launcher says which one it resumes from and why it passed over the others."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_train import loss_steps, workspace

from launcher.layout import checkpoint_problem
from launcher.run.rundir import RunDirRefused, checkpoint_to_resume

from support.cli import run_cli, run_main
from support.training import rank_log, training_env


def fingerprint(path: Path) -> str:
    return f"{path} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}, {path.stat().st_size} bytes)"


def launches(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "dpo-launch" / "launches.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory, tiny_model_dir):
    """A finished 2-step run with checkpoint-2 (tests copy nothing: each test below runs in order on it)."""
    ws = workspace(tmp_path_factory.mktemp("resume") / "ws", tiny_model_dir, max_steps=2, save_steps=2)
    result = run_cli("train", ws.config, "--no-monitor", cwd=ws.root, env=training_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return ws


@pytest.mark.subprocess
def test_resume_with_changed_hyperparameters_and_data_is_refused_listing_them_then_allowed_and_recorded(two_steps):
    ws, out = two_steps, two_steps.out
    data = ws.root / "data" / "demo_dpo.jsonl"
    old_data, manifest = fingerprint(data), {name: (out / "dpo-launch" / name).read_bytes()
                                             for name in ("resolved_config.json", "datasets.json", "launches.jsonl")}
    [first_start, first_end] = launches(out)
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:100]))  # 100 of the 256 records
    ws.write_config(pref_beta=0.2, learning_rate=5.0e-4, max_steps=4)

    refused = run_main("train", ws.config, "--resume", "--no-monitor", cwd=ws.root)

    assert (refused.returncode, refused.stderr) == (1, (
        f"dpo-launch train: error: --resume: the config or the data changed since the run's last launch "
        f"({first_start['time']}):\n"
        "  learning_rate: 0.001 -> 0.0005\n"
        "  pref_beta: 0.1 -> 0.2\n"
        f"  dataset demo_dpo: {old_data} -> {fingerprint(data)}\n"
        "resuming would continue its optimizer and data order with them; undo the changes, pass --allow-changes to "
        f"resume anyway (every launch is recorded in {out / 'dpo-launch/launches.jsonl'}), or start a new run in "
        "another output_dir\n"))
    assert {name: (out / "dpo-launch" / name).read_bytes() for name in manifest} == manifest

    allowed = run_cli("train", ws.config, "--resume", "--allow-changes", "--no-monitor", cwd=ws.root,
                      env=training_env())

    assert allowed.returncode == 0, allowed.stdout[-3000:] + allowed.stderr[-3000:]
    assert [line for line in allowed.stdout.splitlines() if "changed since the last launch" in line] == [
        "dpo-launch train: --resume: changed since the last launch: max_steps: 2 -> 4",
        "dpo-launch train: --resume: changed since the last launch (--allow-changes): learning_rate: 0.001 -> 0.0005",
        "dpo-launch train: --resume: changed since the last launch (--allow-changes): pref_beta: 0.1 -> 0.2",
        f"dpo-launch train: --resume: changed since the last launch (--allow-changes): dataset demo_dpo: {old_data} "
        f"-> {fingerprint(data)}"]
    assert loss_steps(out) == [1, 2, 3, 4]
    history = launches(out)
    assert [(e["launch"], e["event"]) for e in history] == [(1, "start"), (1, "end"), (2, "start"), (2, "end")]
    assert history[:2] == [first_start, first_end]  # appended, never rewritten
    assert (first_end["exit_code"], first_end["state"], history[3]["exit_code"], history[3]["state"]) == (
        0, "finished", 0, "finished")
    assert (first_start["resolved_config"]["pref_beta"], history[2]["resolved_config"]["pref_beta"]) == (0.1, 0.2)
    assert (first_start["consent"], history[2]["consent"], history[2]["allow_changes"]) == (None, "resume", True)
    assert first_start["datasets"] != history[2]["datasets"]
    assert history[2]["resolved_config"] == json.loads((out / "dpo-launch" / "resolved_config.json").read_text())


def test_allow_changes_without_resume_is_a_usage_error(tmp_path):
    result = run_main("train", tmp_path / "config.yaml", "--allow-changes", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "dpo-launch: error: --allow-changes goes with --resume (it lets a "
                                                     "resumed run use a changed config or data)\n")


# --- item 9: which checkpoint is complete -------------------------------------------------------------------

def checkpoint(out: Path, step: int, state: str | None = '{"global_step": 1}', weights: bool = True) -> Path:
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    if weights:
        (folder / "model.safetensors").write_bytes(b"weights")
    return folder


@pytest.mark.parametrize("state, weights, problem", [
    ('{"global_step": 1}', True, None),
    (None, True, "no trainer_state.json: its save did not finish"),
    ("", True, "trainer_state.json is empty"),
    ('{"global_st', True, "trainer_state.json is not valid JSON (Unterminated string starting at: line 1 column 2 "
                          "(char 1))"),
    ("[]", True, "trainer_state.json is not a JSON object"),
    ('{"global_step": 1}', False, "no model weights (no model.safetensors, adapter_model.safetensors, "
                                  "pytorch_model.bin or shards)"),
], ids=["complete", "no-state", "empty-state", "cut-state", "not-an-object", "no-weights"])
def test_a_checkpoint_is_complete_only_when_its_state_parses_and_its_weights_exist(tmp_path, state, weights, problem):
    assert checkpoint_problem(checkpoint(tmp_path, 1, state, weights)) == problem


def test_resume_says_which_checkpoint_it_picked_and_why_it_passed_over_newer_ones(tmp_path, capsys):
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 4, state="")
    checkpoint(tmp_path, 6, weights=False)

    assert checkpoint_to_resume(tmp_path) == tmp_path / "checkpoint-2"
    assert capsys.readouterr().out == (
        "dpo-launch train: --resume: resuming from checkpoint-2, the last complete checkpoint; passing over "
        "checkpoint-4: trainer_state.json is empty; checkpoint-6: no model weights (no model.safetensors, "
        "adapter_model.safetensors, pytorch_model.bin or shards)\n")


def test_resume_with_no_complete_checkpoint_says_why_each_one_is_not(tmp_path):
    checkpoint(tmp_path, 2, state="")
    with pytest.raises(RunDirRefused) as refused:
        checkpoint_to_resume(tmp_path)
    assert str(refused.value) == (f"--resume: no complete checkpoint-N directory in {tmp_path} to resume from "
                                  "(checkpoint-2: trainer_state.json is empty); pass --overwrite to start over")


@pytest.mark.subprocess
def test_resume_passes_over_a_checkpoint_whose_trainer_state_is_empty(tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir)  # 4 steps, checkpoints 2 and 4
    first = run_cli("train", ws.config, "--no-monitor", cwd=ws.root, env=training_env())
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (ws.out / "checkpoint-4" / "trainer_state.json").write_bytes(b"")
    ws.write_config(max_steps=6)

    resumed = run_cli("train", ws.config, "--resume", "--no-monitor", cwd=ws.root, env=training_env())

    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert ("dpo-launch train: --resume: resuming from checkpoint-2, the last complete checkpoint; passing over "
            "checkpoint-4: trainer_state.json is empty") in resumed.stdout.splitlines()
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in rank_log(ws.out)
    assert loss_steps(ws.out) == [1, 2, 3, 4, 5, 6]
