"""Fixtures for real training runs: the tiny model (built once) and a workspace with a config and demo data.

A workspace is a directory holding `config.yaml`, `data/` (the repo's demo data and dataset_info.json) and, after
a run, `out/` (the config's output_dir). Paths in the config are relative to the workspace except the model, so
run commands with `cwd=ws.root`. The model is built by `python scripts/tiny_model.py` in a subprocess, which keeps
torch out of the pytest process, into `<repo>/.cache/tiny-llama` (gitignored) and reused across sessions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = ["Workspace", "TRAIN_DEFAULTS", "tiny_model_dir", "dpo_workspace", "dpo_workspace_factory",
           "run_worker", "build_tiny_model_once", "training_env"]

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL_CACHE = REPO / ".cache" / "tiny-llama"
DEMO_FILES = ("dataset_info.json", "demo_dpo.jsonl", "demo_kto.jsonl")

# Small and fast: each run is ~10 s of imports and well under a second of training on CPU.
TRAIN_DEFAULTS: dict[str, Any] = {
    "stage": "dpo",
    "do_train": True,
    "finetuning_type": "full",
    "pref_loss": "sigmoid",
    "pref_beta": 0.1,
    "dataset": "demo_dpo",
    "dataset_dir": "data",
    "template": "default",
    "cutoff_len": 64,
    "preprocessing_num_workers": 1,
    "output_dir": "out",
    "per_device_train_batch_size": 2,
    "learning_rate": 1.0e-3,
    "lr_scheduler_type": "constant",
    "max_steps": 5,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "tensorboard",
    "seed": 42,
}


def training_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # 2 threads are ~50x slower on a shared 2-core machine (docs/upstream-notes.md#cpu-threads)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def build_tiny_model_once(path: Path = TINY_MODEL_CACHE) -> Path:
    """Build the tiny model unless a complete build is there (the builder itself is idempotent)."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "tiny_model.py"), str(path)], cwd=REPO, env=training_env(),
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"building the tiny model failed:\n{result.stdout}\n{result.stderr}")
    return path


@dataclass
class Workspace:
    root: Path
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def output_dir(self) -> str:
        return self.values["output_dir"]

    @property
    def out(self) -> Path:
        return self.root / self.output_dir

    def write_config(self, **overrides: Any) -> Workspace:
        """Apply overrides (None removes a key) and rewrite config.yaml."""
        for key, value in overrides.items():
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value
        self.config.write_text(yaml.safe_dump(self.values, sort_keys=False), encoding="utf-8")
        return self

    def write_args(self) -> Path:
        """The flat argument JSON the worker reads (what `train` writes as resolved_config.json)."""
        path = self.root / "args.json"
        path.write_text(json.dumps(self.values, indent=2), encoding="utf-8")
        return path

    def runtime(self) -> dict[str, Any]:
        return json.loads((self.out / "dpo-launch" / "runtime.json").read_text(encoding="utf-8"))

    def log_history(self) -> list[dict[str, Any]]:
        return json.loads((self.out / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]

    def losses(self) -> list[float]:
        return [entry["loss"] for entry in self.log_history() if "loss" in entry]


def make_workspace(root: Path, model: Path, **overrides: Any) -> Workspace:
    (root / "data").mkdir(parents=True)
    for name in DEMO_FILES:
        shutil.copyfile(REPO / "data" / name, root / "data" / name)
    workspace = Workspace(root, {"model_name_or_path": str(model), **TRAIN_DEFAULTS})
    return workspace.write_config(**overrides)


def run_worker(ws: Workspace, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m launcher.worker --args-file` on the workspace's current config, in one process."""
    return subprocess.run([sys.executable, "-m", "launcher.worker", "--args-file", str(ws.write_args())],
                          cwd=ws.root, env=env or training_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny Llama (about 148k parameters, vocabulary 512), built once into <repo>/.cache/tiny-llama."""
    return build_tiny_model_once()


@pytest.fixture
def dpo_workspace(tmp_path: Path, tiny_model_dir: Path) -> Workspace:
    """A DPO workspace in tmp_path with the defaults above; call `.write_config(key=value)` to change it."""
    return make_workspace(tmp_path / "ws", tiny_model_dir)


@pytest.fixture
def dpo_workspace_factory(tmp_path: Path, tiny_model_dir: Path):
    """Make several workspaces: `dpo_workspace_factory("name", pref_loss="hinge")`."""
    def make(name: str = "ws", **overrides: Any) -> Workspace:
        return make_workspace(tmp_path / name, tiny_model_dir, **overrides)

    return make
