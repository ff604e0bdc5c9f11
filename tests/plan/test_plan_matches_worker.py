"""`plan`'s reference-model verdict matches what the worker actually built, for each case.

Each case plans a config, trains it for one step through `dpo-launch train` on the tiny model (real LLaMA-Factory,
CPU), and compares plan's `reference.kind` with the worker's `<output_dir>/dpo-launch/runtime.json`; where the
reference holds weights, plan's parameter count (from config.json) must equal the worker's count too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from support.cli import cli_env, run_cli
from support.workspaces import CONFIG, write_workspace

pytestmark = pytest.mark.slow

TINY_PARAMETERS = 147_776  # scripts/tiny_model.py: hidden 64, intermediate 128, 2 layers, vocab 512, untied


SHORT = {"max_steps": "1", "per_device_train_batch_size": "2", "cutoff_len": "32", "report_to": "none",
         "learning_rate": "1.0e-4"}
CASES = {
    "lora": ({"finetuning_type": "lora"}, "adapter-disabled"),
    "full": ({"finetuning_type": "full"}, "frozen-copy"),
    "explicit-ref-model": ({"finetuning_type": "lora", "ref_model": "model"}, "explicit"),
    "orpo": ({"finetuning_type": "lora", "pref_loss": "orpo"}, "none"),
}


def workspace_for(tmp_path: Path, model: Path, changes: dict[str, str]) -> Path:
    lines = [line for line in CONFIG.splitlines() if line.split(":")[0] not in {**SHORT, **changes}]
    config = "\n".join(lines + [f"{key}: {value}" for key, value in {**SHORT, **changes}.items()]) + "\n"
    workspace = write_workspace(tmp_path, config, records=8)
    shutil.rmtree(workspace / "model")
    shutil.copytree(model, workspace / "model")
    return workspace


@pytest.mark.parametrize("case", list(CASES))
def test_plan_reference_kind_matches_the_worker(tmp_path, tiny_model_dir, case):
    changes, expected = CASES[case]
    workspace = workspace_for(tmp_path, tiny_model_dir, changes)
    env = cli_env(HF_HUB_CACHE=str(tmp_path / "hub"), OMP_NUM_THREADS="1")
    planned = run_cli("plan", "config.yaml", "--format", "json", cwd=workspace, env=env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    plan = json.loads(planned.stdout)
    trained = run_cli("train", "config.yaml", "--no-monitor", cwd=workspace, env=env, timeout=900)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    runtime = json.loads((workspace / "runs/demo/dpo-launch/runtime.json").read_text())
    assert (plan["reference"]["kind"], runtime["reference"]["kind"]) == (expected, expected)
    assert plan["memory"]["parameters"] == TINY_PARAMETERS
    if expected != "none":
        assert runtime["reference"]["parameters"] == TINY_PARAMETERS
