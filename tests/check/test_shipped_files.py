"""Every config and data file we ship passes the full `dpo-launch validate`, records included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import REPO, run_cli, run_main

DEMO_CONFIGS = ["config/demo_dpo.yaml", "config/demo_kto.yaml"]
# The GPU example names LLaMA-Factory's own dpo_en_demo, which lives in LLaMA-Factory's data/, not ours.
GPU_CONFIGS = ["config/llama3_8b_lora_dpo.yaml"]


def errors_and_warnings(stdout: str) -> tuple[list[dict], list[dict]]:
    diagnostics = json.loads(stdout)["diagnostics"]
    return ([d for d in diagnostics if d["severity"] == "error"],
            [d for d in diagnostics if d["severity"] == "warning"])


@pytest.mark.subprocess
@pytest.mark.parametrize("config", DEMO_CONFIGS)
def test_demo_config_and_every_demo_record_validate_without_errors(config, tiny_model_dir: Path):
    result = run_cli("validate", config, f"model_name_or_path={tiny_model_dir}", "--format", "json", cwd=REPO)
    errors, warnings = errors_and_warnings(result.stdout)

    assert (result.returncode, errors) == (0, [])
    # The toy model needs a learning rate no pretrained model would survive; validate says so, and nothing else.
    assert {w["code"] for w in warnings} <= {"learning-rate-high"}
    assert json.loads(result.stdout)["summary"]["data"]["would_drop"] == 0


@pytest.mark.parametrize("config", GPU_CONFIGS)
def test_gpu_example_config_validates_without_errors_or_warnings(config):
    result = run_main("validate", config, "--no-data", "--format", "json", cwd=REPO)
    errors, warnings = errors_and_warnings(result.stdout)

    assert (result.returncode, errors, warnings) == (0, [], [])


def test_every_shipped_yaml_is_covered_here():
    shipped = {str(path.relative_to(REPO)) for path in (REPO / "config").glob("*.yaml")}

    assert shipped == set(DEMO_CONFIGS + GPU_CONFIGS)
