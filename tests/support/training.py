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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.observe.events import EventReader, Scalar

# What conftest.py re-exports: the fixtures (and the names their users import with them).
__all__ = ["Workspace", "TRAIN_DEFAULTS", "tiny_model_dir", "planned_workspace", "dpo_workspace",
           "dpo_workspace_factory", "run_worker", "build_tiny_model_once", "training_env"]

from support.cli import REPO
from support.workspaces import MODEL

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
    # 2 threads are ~50x slower on a shared 2-core machine (docs/upstream-notes.md#cpu-threads)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def build_tiny_model_once(path: Path = TINY_MODEL_CACHE) -> Path:
    """Build the tiny model unless a complete build is there (the builder itself is idempotent)."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "tiny_model.py"), str(path)], cwd=REPO,
                            env=training_env(),
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


def rank_log(output_dir: Path, rank: int = 0) -> str:
    """Everything rank `rank` printed under `dpo-launch train` (every launch of the run): LLaMA-Factory's and
    transformers' logs are there, not on the console (launcher.run.tee)."""
    return (output_dir / "dpo-launch" / "logs" / f"rank-{rank}.log").read_text(encoding="utf-8")


def run_worker(ws: Workspace, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m launcher.worker --args-file` on the workspace's current config, in one process."""
    return subprocess.run([sys.executable, "-m", "launcher.worker", "--args-file", str(ws.write_args())],
                          cwd=ws.root, env=env or training_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny Llama (about 148k parameters, vocabulary 512), built once into <repo>/.cache/tiny-llama."""
    return build_tiny_model_once()


@pytest.fixture
def planned_workspace(tmp_path: Path) -> Workspace:
    """A DPO workspace whose model is only a config.json (support.workspaces.MODEL): enough for validate, plan
    and `train --dry-run`, which never load weights; nothing is built, so the test can run in the fast tier."""
    model = tmp_path / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(MODEL))
    return make_workspace(tmp_path / "ws", model)


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


# --- one live run per session, shared by the metrics, monitor, events, report and TensorBoard tests -------

REWARD_TAGS = ("train/rewards/chosen", "train/rewards/rejected", "train/rewards/margins", "train/rewards/accuracies")
LIVE_CONFIG = {"max_steps": 60, "logging_steps": 1, "pref_beta": 0.5, "learning_rate": 1.0e-2,
               "per_device_train_batch_size": 8, "val_size": 0.25, "eval_strategy": "steps", "eval_steps": 20,
               "per_device_eval_batch_size": 8}


@dataclass
class LiveRun:
    out: Path
    returncode: int
    output: str
    # (tag, step) -> (time we first read it, the event's own wall_time, was the job still running then, value)
    seen: dict[tuple[str, int], tuple[float, float, bool, float]] = field(default_factory=dict)

    def latencies(self, tag: str = "train/loss") -> list[float]:
        return [read - wall for (t, _), (read, wall, running, _) in self.seen.items() if t == tag and running]


_LIVE: dict[str, LiveRun] = {}


def live_run(tmp_path_factory, tiny_model_dir) -> LiveRun:
    """Start `dpo-launch train` in the background and read its event files every 50 ms until it ends (once)."""
    if "run" not in _LIVE:
        ws = make_workspace(tmp_path_factory.mktemp("live") / "live run", tiny_model_dir, **LIVE_CONFIG)
        log = ws.root / "train.log"
        with open(log, "w", encoding="utf-8") as handle:
            process = subprocess.Popen([sys.executable, "-m", "launcher", "train", "config.yaml", "--no-monitor"],
                                       cwd=ws.root, env=training_env(), stdout=handle, stderr=subprocess.STDOUT)
            seen = follow_events(process, ws.out / "tensorboard")
        _LIVE["run"] = LiveRun(ws.out, process.returncode, log.read_text(encoding="utf-8"), seen)
    return _LIVE["run"]


def follow_events(process: subprocess.Popen, logdir: Path, timeout: float = 900) -> dict:
    reader, seen = EventReader(logdir), {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = process.poll() is None
        now = time.time()
        for event in reader.poll():
            if isinstance(event, Scalar):
                seen.setdefault((event.tag, event.step), (now, event.wall_time, running, event.value))
        if not running:
            return seen
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"dpo-launch train did not finish in {timeout} s")
