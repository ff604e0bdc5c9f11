"""The judge of the evaluation tests: a tiny reward model trained by LLaMA-Factory (`llamafactory-cli train` on the
loop demo's judge config, config/loop/demo_rm.yaml: `stage: rm` on the demo pairs), built once into
<repo>/.cache/tiny-rm and reused while that config is unchanged. Its scores are deterministic, so win rates, pairs
and gates built on them can be asserted. tests/conftest.py makes `tiny_reward_model` a fixture everywhere."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.cli import REPO
from support.training import training_env

RM_CACHE = REPO / ".cache" / "tiny-rm"
RM_CONFIG = yaml.safe_load((REPO / "config" / "loop" / "demo_rm.yaml").read_text(encoding="utf-8"))


def build_tiny_reward_model(model: Path, target: Path = RM_CACHE) -> Path:
    stamp = hashlib.sha256(json.dumps(RM_CONFIG, sort_keys=True).encode()).hexdigest()[:16]
    if (target / ".stamp").is_file() and (target / ".stamp").read_text() == stamp:
        return target
    work = target.with_name(target.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    for name in ("dataset_info.json", "demo_dpo.jsonl"):
        shutil.copyfile(REPO / "data" / name, work / "data" / name)
    config = {**RM_CONFIG, "model_name_or_path": str(model), "output_dir": str(work / "model")}
    (work / "rm.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "llamafactory.cli", "train", "rm.yaml"], cwd=work,
                            env=training_env(), capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"training the tiny reward model failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    shutil.rmtree(target, ignore_errors=True)
    (work / "model").rename(target)
    (target / ".stamp").write_text(stamp)
    shutil.rmtree(work)
    return target


@pytest.fixture(scope="session")
def tiny_reward_model(tiny_model_dir) -> Path:
    """A LLaMA-Factory `stage: rm` output (weights + value_head.safetensors) of the tiny model on demo_dpo."""
    return build_tiny_reward_model(tiny_model_dir)
