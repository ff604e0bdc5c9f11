"""`train --precompute-ref` on CPU: training speed and peak memory with vs without the cache, the pass's one-off
cost, and a `pref_beta` sweep's total wall time with one shared cache vs without.

The model is scripts/small_model.py's random-init Llama (`--size 250m --layers 2`: about 88M parameters, most of
them in the 32000-row embedding and LM head, so compute dominates over Python overhead), converted to an
fp32 checkpoint (policy and reference both fp32). Full
fine-tuning without gradient checkpointing, sigmoid loss, the demo preference data cut to `--pairs` pairs,
`--epochs` epochs per run. Each run is one worker process
(`python -m launcher.worker`, what `dpo-launch train` starts on one process); its peak RSS comes from wait4, its
training speed from the trainer's own `train_steps_per_second` (the training loop only, not the start-up), the
pass's cost from the worker's own line. Every figure is a ratio against the baseline measured in this same run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/precompute_ref.py [--layers 2] [--pairs 64] [--batch 8] [--epochs 1]

Goals (issue 15): steps/s with the cache >= 1.25x without, peak RSS down by about one model copy, the 4-run
sweep >= 1.2x faster end to end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BETAS = (0.05, 0.1, 0.2, 0.5)
PASS_LINE = re.compile(r"reference log-probs: (\d+) pairs computed in ([0-9.]+)s")


@dataclass
class RunResult:
    wall_s: float
    peak_rss_mib: float
    steps_per_s: float
    pass_s: float | None
    output: str


def build_model(layers: int) -> Path:
    """small_model.py's build (bf16), converted once to an fp32 checkpoint: with a bf16 checkpoint LLaMA-Factory
    upcasts the trainable policy to fp32 but keeps the frozen reference in bf16, so they differ at step 0."""
    bf16 = REPO / ".cache" / f"bench-precompute-llama-250m-{layers}l"
    fp32 = bf16.with_name(bf16.name + "-fp32")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "small_model.py"), str(bf16), "--size", "250m",
                             "--layers", str(layers)], cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"building the model failed:\n{result.stdout}\n{result.stderr}")
    if not (fp32 / "model.safetensors").is_file():
        from safetensors.torch import load_file, save_file  # the bench may import torch; the launcher never does

        staging = fp32.with_name(fp32.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(bf16, staging)
        tensors = {name: tensor.float() for name, tensor in load_file(str(bf16 / "model.safetensors")).items()}
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        config = json.loads((staging / "config.json").read_text(encoding="utf-8"))
        config.update({"dtype": "float32", "torch_dtype": "float32"})
        (staging / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        staging.rename(fp32)
    return fp32


def parameters(model: Path) -> int:
    from safetensors import safe_open  # the bench may import it; the launcher never does

    total = 0
    for file in model.glob("*.safetensors"):
        with safe_open(str(file), "np") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                total += math.prod(handle.get_slice(name).get_shape())
    return total


def workspace(root: Path, model: Path, pairs: int, cutoff_len: int, batch: int, epochs: int) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    for name in ("dataset_info.json", "demo_dpo.jsonl"):
        shutil.copyfile(REPO / "data" / name, data / name)
    base = {"model_name_or_path": str(model), "stage": "dpo", "do_train": True, "finetuning_type": "full",
            "pref_loss": "sigmoid", "dataset": "demo_dpo", "dataset_dir": str(data), "template": "default",
            "cutoff_len": cutoff_len, "max_samples": pairs, "preprocessing_num_workers": 1,
            "per_device_train_batch_size": batch, "num_train_epochs": epochs, "learning_rate": 1.0e-6,
            "lr_scheduler_type": "constant", "logging_steps": 1, "save_strategy": "no", "report_to": "none",
            "seed": 42, "disable_gradient_checkpointing": True}
    (root / "base.json").write_text(json.dumps(base), encoding="utf-8")
    return root


def run(root: Path, name: str, beta: float, cache: Path | None) -> RunResult:
    """One worker process; wait4 gives its own peak RSS."""
    cfg = json.loads((root / "base.json").read_text(encoding="utf-8"))
    cfg.update(output_dir=str(root / "runs" / name), pref_beta=beta)
    args = root / f"{name}.json"
    args.write_text(json.dumps(cfg), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("DPO_LAUNCH_PRECOMPUTE_REF", None)
    if cache is not None:
        env["DPO_LAUNCH_PRECOMPUTE_REF"] = str(cache)
    log = root / f"{name}.log"
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen([sys.executable, "-m", "launcher.worker", "--args-file", str(args)], cwd=root,
                                   env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(encoding="utf-8")
    if process.returncode != 0:
        raise SystemExit(f"{name} failed ({process.returncode}):\n{output[-4000:]}")
    metrics = json.loads((root / "runs" / name / "train_results.json").read_text(encoding="utf-8"))
    found = PASS_LINE.search(output)
    return RunResult(wall, usage.ru_maxrss / 1024, metrics["train_steps_per_second"],
                     float(found.group(2)) if found else None, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="small_model.py layers at --size 250m (default 2)")
    parser.add_argument("--pairs", type=int, default=64, help="preference pairs per run (max_samples)")
    parser.add_argument("--batch", type=int, default=8, help="per_device_train_batch_size (pairs per step)")
    parser.add_argument("--cutoff-len", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1, help="num_train_epochs of each run (the pass stays one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    model = build_model(args.layers)
    root = Path(tempfile.mkdtemp(prefix="bench-precompute-"))
    try:
        workspace(root, model, args.pairs, args.cutoff_len, args.batch, args.epochs)
        size = parameters(model)
        print(f"model: {model.name}, {size / 1e6:.1f}M parameters (an fp32 copy: {size * 4 / 2**20:.0f} MiB); "
              f"{args.pairs} pairs x {args.epochs} epoch(s), cutoff_len {args.cutoff_len}, batch {args.batch}, "
              "full fine-tuning, CPU, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}", flush=True)
        plain = [run(root, f"plain-{beta}", beta, None) for beta in BETAS]
        cache = root / "cache"
        cached = [run(root, f"cached-{beta}", beta, cache) for beta in BETAS]
        for label, results in (("without cache", plain), ("with cache", cached)):
            for beta, result in zip(BETAS, results, strict=True):
                extra = f", pass {result.pass_s:.1f}s" if result.pass_s is not None else ""
                print(f"  {label:14s} pref_beta {beta:<5}: wall {result.wall_s:6.1f}s, train {result.steps_per_s:.3f}"
                      f" steps/s, peak RSS {result.peak_rss_mib:7.0f} MiB{extra}", flush=True)
        hits = sum("cache hit" in result.output for result in cached)
        # Training speed and memory: the runs that read a ready cache (all but the first) against all plain runs.
        plain_speed = sum(r.steps_per_s for r in plain) / len(plain)
        cached_speed = sum(r.steps_per_s for r in cached[1:]) / len(cached[1:])
        plain_rss = max(r.peak_rss_mib for r in plain)
        cached_rss = max(r.peak_rss_mib for r in cached[1:])
        plain_wall, cached_wall = sum(r.wall_s for r in plain), sum(r.wall_s for r in cached)
        print(f"cache hits: {hits} of {len(cached)} runs (expected {len(cached) - 1})")
        print(f"training steps/s: {cached_speed:.3f} with vs {plain_speed:.3f} without = "
              f"{cached_speed / plain_speed:.2f}x (goal >= 1.25x)")
        print(f"peak RSS: {cached_rss:.0f} MiB with vs {plain_rss:.0f} MiB without: {plain_rss - cached_rss:.0f} MiB "
              f"less (one fp32 model copy: {size * 4 / 2**20:.0f} MiB)")
        print(f"one-off pass: {cached[0].pass_s:.1f}s for {args.pairs} pairs; first cached run wall "
              f"{cached[0].wall_s:.1f}s vs {plain[0].wall_s:.1f}s without")
        print(f"4-run pref_beta sweep wall: {cached_wall:.1f}s with one shared cache vs {plain_wall:.1f}s without = "
              f"{plain_wall / cached_wall:.2f}x (goal >= 1.2x)")
    finally:
        if args.keep:
            print(f"work folder: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
