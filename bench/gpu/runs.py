"""The training runs of the GPU check: one config per case, trained through `dpo-launch train` or
`llamafactory-cli train`, and what each run left behind, read back.

The config, the launch and the tokens/s measurement are bench/gpu_throughput.py's (`bench_config`, `tool_argv`,
`run_tool`, `self_test`), so the check and the throughput benchmark measure the same way. Peak GPU memory comes
from LLaMA-Factory's own logging: with RECORD_VRAM=1 every trainer_log.jsonl line carries `vram_allocated`,
torch.cuda.max_memory_allocated() of rank 0 in GiB (LogCallback.on_log in llamafactory/train/callbacks.py), for
both tools alike and without code of ours inside the rank.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # launcher, and bench/gpu_throughput.py
import gpu_throughput  # noqa: E402

from launcher.layout import tensorboard_dir, weight_files  # noqa: E402
from launcher.observe.events import Scalar, read_all  # noqa: E402

REWARD_TAGS = ("train/rewards/chosen", "train/rewards/rejected", "train/rewards/accuracies", "train/rewards/margins")
DEEPSPEED_ZERO2 = REPO / "config" / "deepspeed" / "ds_z2_config.json"


@dataclass(frozen=True)
class Case:
    name: str
    tool: str                       # "dpo-launch" or "llamafactory-cli"
    finetuning_type: str            # "lora" or "full"
    changes: dict = field(default_factory=dict)
    flags: tuple[str, ...] = ()     # dpo-launch train flags


CASES = {case.name: case for case in (
    Case("lora", "dpo-launch", "lora", {"flash_attn": "sdpa"}),
    Case("lora-llamafactory-cli", "llamafactory-cli", "lora", {"flash_attn": "sdpa"}),
    Case("full", "dpo-launch", "full", {"flash_attn": "sdpa"}),
    Case("full-precompute", "dpo-launch", "full", {"flash_attn": "sdpa"}, ("--precompute-ref",)),
    Case("full-zero2", "dpo-launch", "full", {"flash_attn": "sdpa", "deepspeed": str(DEEPSPEED_ZERO2)}),
    Case("lora-fa2", "dpo-launch", "lora", {"flash_attn": "fa2"}),
)}


def write_config(case: Case, model: Path, work: Path, steps: int, gpu: bool) -> Path:
    """gpu_throughput's bench config for this case, with the case's changes, as <work>/<case>.yaml."""
    args = argparse.Namespace(finetuning_type=case.finetuning_type, steps=steps, deepspeed=None)
    config = gpu_throughput.bench_config(model, work / "data", args, gpu)
    config.update(case.changes, output_dir=str(work / "runs" / case.name))
    path = work / f"{case.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def plan_estimate(config: Path, log: Path) -> dict:
    """`dpo-launch plan --format json`: the memory estimate per GPU, and the parameter count it is based on."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    try:
        result = subprocess.run([sys.executable, "-m", "launcher", "plan", str(config), "--format", "json"],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "dpo-launch plan ran past 120 s and was stopped"}
    log.write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        return {"error": f"dpo-launch plan exited {result.returncode}; see {log.name}"}
    memory = json.loads(result.stdout)["memory"]
    return {"total_gib": memory["total_gib"], "zero": memory["zero"], "parameters": memory["parameters"]}


def reward_points(output_dir: Path) -> dict[str, int]:
    """How many points each reward tag has in the run's TensorBoard files (read without tensorboard)."""
    events = read_all(tensorboard_dir(output_dir)) if tensorboard_dir(output_dir).is_dir() else []
    return {tag: sum(1 for e in events if isinstance(e, Scalar) and e.tag == tag) for tag in REWARD_TAGS}


def vram_peak_gib(output_dir: Path) -> float | None:
    """The largest `vram_allocated` of trainer_log.jsonl (GiB), None when no line has one."""
    path = output_dir / "trainer_log.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    values = [json.loads(line).get("vram_allocated") for line in lines if line.strip()]
    values = [value for value in values if value is not None]
    return max(values) if values else None


def train(case: Case, config: Path, logs: Path, timeout_s: float) -> dict:
    """Train one case to its end (or its timeout) and read back what it measured; never raises for a failed run.
    The environment is this process's (check.py sets RECORD_VRAM=1 and the offline switches in it)."""
    output_dir = Path(yaml.safe_load(config.read_text(encoding="utf-8"))["output_dir"])
    argv, tool_env = gpu_throughput.tool_argv(case.tool, config, 1, "deepspeed" in case.changes)
    argv += list(case.flags)
    started = time.perf_counter()
    try:
        result = gpu_throughput.run_tool(argv, tool_env, output_dir, logs / f"{case.name}.log", timeout_s)
    except (RuntimeError, OSError) as exc:
        return {"ok": False, "error": str(exc).splitlines()[0], "wall_s": round(time.perf_counter() - started, 1)}
    result.update(ok=True, error=None, reward_points=reward_points(output_dir), vram_peak_gib=vram_peak_gib(output_dir))
    if case.tool == "dpo-launch":
        result["self_test"] = gpu_throughput.self_test(output_dir)
    for path in weight_files(output_dir):  # a full model per run would fill the disk; the check needs no weights
        path.unlink()
    return result
