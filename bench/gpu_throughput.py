"""Training throughput on a GPU: `dpo-launch train` vs `llamafactory-cli train`, same config, same run.

On a CUDA machine, from the repo root:

    OMP_NUM_THREADS=1 .venv/bin/python bench/gpu_throughput.py [--arch llama] [--steps 30] [--repeats 3]
        [--finetuning-type lora|full] [--deepspeed ds_z2_config] [--nproc-per-node 1] [--layers 16]

What it does: builds a small real architecture with random init and no hub (scripts/small_model.py: Llama or
Qwen2, hidden 1024, 16 layers, GQA 16/4 heads, 32000-row vocabulary, ~250M parameters, bf16) into
`.cache/bench-<arch>-<layers>l`, generates DPO pairs with long answers (so each row nearly fills cutoff_len 1024),
writes one bf16 DPO config (sigmoid loss, batch 8 pairs per GPU, logging_steps 5, report_to tensorboard) and
trains it through both tools, alternating which goes first on each repeat so drift in the machine hits both.

What it measures, per run: tokens/s = `num_input_tokens_seen` (trainer_state.json; with
`include_num_input_tokens_seen: non_padding` transformers 5.6 counts the attention-mask tokens of every
micro-batch, chosen and rejected rows together, summed over ranks; the reference model's forward pass is not
counted again) / `train_runtime` (all_results.json: the trainer's own clock, from the start of the training
loop to its end, so process start, imports, model loading and tokenizing are left out); and steady tokens/s from
the arrival times of the trainer_log.jsonl lines (first logged step to last, so warm-up steps are left out).
It prints JSON: the median of each tool, the ratio dpo-launch / llamafactory-cli (1.0 = no overhead), and the
first-batch loss self-test verdict of every dpo-launch run (<output_dir>/dpo-launch/runtime.json; bf16 tolerance).

Without a CUDA GPU it exits 2 ("needs a CUDA GPU"). `--allow-cpu` runs the same flow on CPU instead, in fp32
with the tiny demo model (scripts/tiny_model.py) and 3 steps: a smoke run of this script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# Run as a script, `launcher` (next to bench/) must be on the path first; launcher.worker.selftest is light (no torch).
sys.path.insert(0, str(REPO))
from launcher.worker.selftest import tolerance  # noqa: E402  (after the path is set)

VENV_BIN = Path(sys.executable).parent
TOOLS = ("llamafactory-cli", "dpo-launch")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# (cutoff_len, pairs per device, logging_steps, answer chunks): GPU rows near 1024 tokens; CPU rows small.
GPU_SHAPE, CPU_SHAPE = (1024, 8, 5, 110), (128, 2, 1, 6)
CUDA_PROBE = ("import json, torch\nok = torch.cuda.is_available()\n"
              "print(json.dumps({'count': torch.cuda.device_count() if ok else 0,"
              " 'name': torch.cuda.get_device_name(0) if ok else None}))")


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0 but got {text!r}")
    return int(text)


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("llama", "qwen2"), default="llama")
    parser.add_argument("--layers", type=positive, default=16, help="decoder layers of the GPU model (16: ~250M)")
    parser.add_argument("--steps", type=positive, help="max_steps of each run (default 30 on GPU, 3 on CPU)")
    parser.add_argument("--repeats", type=positive, default=3, help="runs of each tool, alternating")
    parser.add_argument("--finetuning-type", choices=("lora", "full"), default="lora")
    parser.add_argument("--deepspeed", metavar="PRESET", help="a config/deepspeed/*.json name (ds_z2_config) or path")
    parser.add_argument("--nproc-per-node", type=positive, default=1)
    parser.add_argument("--allow-cpu", action="store_true", help="without a GPU, run a CPU smoke run instead")
    parser.add_argument("--work-dir", type=Path, help="keep configs, data and logs here (default: a temp dir)")
    return parser.parse_args(argv)


def cuda_devices() -> dict:
    """{'count', 'name'} as torch sees it, asked in a subprocess so this process holds no CUDA context."""
    probe = subprocess.run([sys.executable, "-c", CUDA_PROBE], check=False, capture_output=True, text=True,
                           timeout=300)
    if probe.returncode != 0:
        return {"count": 0, "name": None}
    return json.loads(probe.stdout.strip().splitlines()[-1])


def deepspeed_preset(value: str | None) -> Path | None:
    if value is None:
        return None
    presets = REPO / "config" / "deepspeed"
    for candidate in (Path(value), presets / value, presets / f"{value}.json", presets / f"ds_{value}_config.json"):
        if candidate.is_file():
            return candidate.resolve()
    names = ", ".join(sorted(p.stem for p in presets.glob("*.json")))
    raise ValueError(f"--deepspeed: expected one of {names} or a file, but got {value!r}")


def build_model(gpu: bool, arch: str, layers: int) -> Path:
    """The small real architecture on GPU, the tiny demo model on CPU; built in a subprocess, cached."""
    if gpu:
        path, argv = REPO / ".cache" / f"bench-{arch}-{layers}l", ["small_model.py", "--layers", str(layers)]
    else:
        path, argv = REPO / ".cache" / "tiny-llama", ["tiny_model.py"]  # the tests' cached build
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    command = [sys.executable, str(REPO / "scripts" / argv[0]), str(path), "--arch", arch if gpu else "llama",
               *argv[1:]]
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return path


def write_dataset(data_dir: Path, answer_chunks: int, pairs: int = 256, seed: int = 0) -> None:
    """Sums with worked answers: the chosen answer is right, the rejected one is off by a little."""
    rng = random.Random(seed)

    def answer(wrong: bool) -> str:
        steps = [(rng.randint(0, 99), rng.randint(0, 99)) for _ in range(answer_chunks)]
        return " ".join(f"{a}+{b}={a + b + (rng.choice([-2, -1, 1, 2]) if wrong else 0)}." for a, b in steps)

    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "bench_dpo.jsonl", "w", encoding="utf-8") as out:
        for _ in range(pairs):
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            prompt = [{"from": "human", "value": f"What is {a}+{b}? Show your work."}]
            record = {"conversations": prompt, "chosen": {"from": "gpt", "value": answer(False)},
                      "rejected": {"from": "gpt", "value": answer(True)}}
            out.write(json.dumps(record) + "\n")
    info = {"bench_dpo": {"file_name": "bench_dpo.jsonl", "formatting": "sharegpt", "ranking": True,
                          "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def bench_config(model: Path, data_dir: Path, args, gpu: bool) -> dict:
    cutoff, batch, logging_steps, _ = GPU_SHAPE if gpu else CPU_SHAPE
    config = {"model_name_or_path": str(model), "stage": "dpo", "do_train": True,
              "finetuning_type": args.finetuning_type, "pref_loss": "sigmoid", "pref_beta": 0.1,
              "dataset": "bench_dpo", "dataset_dir": str(data_dir), "template": "default", "cutoff_len": cutoff,
              "preprocessing_num_workers": 1, "logging_steps": logging_steps, "save_strategy": "no",
              "report_to": "tensorboard", "include_num_input_tokens_seen": "non_padding",
              "per_device_train_batch_size": batch, "gradient_accumulation_steps": 1,
              "learning_rate": 1.0e-4 if args.finetuning_type == "lora" else 5.0e-6,
              "lr_scheduler_type": "constant", "max_steps": args.steps, "seed": 42, "bf16": gpu}
    if args.finetuning_type == "lora":
        config.update(lora_target="all", lora_rank=16)
    if args.deepspeed:
        config["deepspeed"] = str(args.deepspeed)
    return config


def tool_argv(tool: str, config: Path, nproc: int, deepspeed: bool) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    if tool == "dpo-launch":  # it runs the interpreter's own torchrun; PATH stays the caller's
        return [sys.executable, "-m", "launcher", "train", str(config), "--no-monitor",
                "--nproc-per-node", str(nproc)], env
    # LF's launcher runs `torchrun` from PATH; the interpreter's own must win when the venv is not activated.
    env["PATH"] = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")])
    cli = VENV_BIN / "llamafactory-cli"
    env["NPROC_PER_NODE"] = str(nproc)  # LF's launcher: torchrun when forced or when it sees several GPUs
    if nproc > 1 or deepspeed:  # LF's docs: DeepSpeed needs torchrun, even for one process
        env["FORCE_TORCHRUN"] = "1"
    return [str(cli) if cli.exists() else "llamafactory-cli", "train", str(config)], env


def run_tool(argv: list[str], env: dict[str, str], output_dir: Path, log_path: Path,
             timeout_s: float | None = None) -> dict:
    """Run one training to its end; note when each trainer_log.jsonl line (with its token count) arrives.
    Past `timeout_s` the tool gets SIGTERM (both tools stop their ranks on it), then SIGKILL a minute later."""
    trainer_log, arrivals, start = output_dir / "trainer_log.jsonl", [], time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            lines = trainer_log.read_text(encoding="utf-8").splitlines() if trainer_log.exists() else []
            for line in lines[len(arrivals):]:
                if line.endswith("}"):  # a line still being written is read again next time
                    arrivals.append((time.perf_counter(), json.loads(line).get("total_tokens")))
            if timeout_s is not None and time.perf_counter() - start > timeout_s:
                stop(process)
                raise RuntimeError(f"{argv[0]} ran past {timeout_s:.0f} s and was stopped; log {log_path}")
            time.sleep(0.02)
    if process.returncode != 0:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-25:])
        raise RuntimeError(f"{argv[0]} exited with {process.returncode}; log {log_path}:\n{tail}")
    return measure(output_dir, arrivals, time.perf_counter() - start)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(output_dir: Path, arrivals: list, wall_s: float) -> dict:
    results = json.loads((output_dir / "all_results.json").read_text(encoding="utf-8"))
    tokens = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))["num_input_tokens_seen"]
    counted = [(t, n) for t, n in arrivals if n is not None]
    steady = None
    if len(counted) >= 2 and counted[-1][0] > counted[0][0]:
        steady = round((counted[-1][1] - counted[0][1]) / (counted[-1][0] - counted[0][0]), 1)
    return {"tokens": tokens, "train_runtime_s": results["train_runtime"], "wall_s": round(wall_s, 2),
            "tokens_per_second": round(tokens / results["train_runtime"], 1), "steady_tokens_per_second": steady}


def self_test(output_dir: Path) -> dict:
    runtime = output_dir / "dpo-launch" / "runtime.json"
    if not runtime.is_file():
        return {"self_test": "missing", "first_batch_loss": None, "expected": None}
    loss = json.loads(runtime.read_text(encoding="utf-8"))["loss"]
    return {key: loss.get(key) for key in ("self_test", "first_batch_loss", "expected")}


def run_all(args, config: dict, work: Path) -> tuple[dict, list]:
    runs: dict[str, list] = {tool: [] for tool in TOOLS}
    verdicts = []
    for repeat in range(args.repeats):
        for tool in TOOLS if repeat % 2 == 0 else TOOLS[::-1]:  # alternate who goes first
            output_dir = work / "runs" / f"{tool}-{repeat}"
            path = work / f"{tool}-{repeat}.yaml"
            path.write_text(yaml.safe_dump(dict(config, output_dir=str(output_dir))), encoding="utf-8")
            argv, env = tool_argv(tool, path, args.nproc_per_node, bool(args.deepspeed))
            runs[tool].append(run_tool(argv, env, output_dir, work / f"{tool}-{repeat}.log"))
            if tool == "dpo-launch":
                verdicts.append(self_test(output_dir))
            shutil.rmtree(output_dir, ignore_errors=True)  # a full-model save per run would fill the disk
    return runs, verdicts


def summarize(args, config: dict, device: dict, runs: dict, verdicts: list) -> dict:
    median = {tool: statistics.median(r["tokens_per_second"] for r in runs[tool]) for tool in TOOLS}
    statuses = {v["self_test"] for v in verdicts}
    return {
        "mode": "gpu" if config["bf16"] else "cpu-smoke (not a measurement)",
        "device": device["name"] or "cpu", "visible_gpus": device["count"], "arch": args.arch,
        "finetuning_type": args.finetuning_type, "deepspeed": config.get("deepspeed"),
        "nproc_per_node": args.nproc_per_node, "steps": args.steps, "repeats": args.repeats,
        "cutoff_len": config["cutoff_len"], "per_device_train_batch_size": config["per_device_train_batch_size"],
        "precision": "bf16" if config["bf16"] else "fp32", "runs": runs, "tokens_per_second": median,
        "ratio": round(median["dpo-launch"] / median["llamafactory-cli"], 3),
        "ratio_means": "dpo-launch tokens/s over llamafactory-cli tokens/s (1.0 = no overhead)",
        "self_test": {"verdict": statuses.pop() if len(statuses) == 1 else "mixed", "runs": verdicts,
                      "relative_tolerance": tolerance(config)},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        args.deepspeed = deepspeed_preset(args.deepspeed)
    except ValueError as exc:
        print(f"gpu_throughput: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    device = cuda_devices()
    gpu = device["count"] > 0
    if not gpu and not args.allow_cpu:
        print("gpu_throughput: needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False); "
              "run it on a GPU machine, or pass --allow-cpu for a CPU smoke run", file=sys.stderr)
        return EXIT_USAGE
    args.steps = args.steps or (30 if gpu else 3)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-gpu-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = build_model(gpu, args.arch, args.layers)
        write_dataset(work / "data", (GPU_SHAPE if gpu else CPU_SHAPE)[3])
        config = bench_config(model, work / "data", args, gpu)
        runs, verdicts = run_all(args, config, work)
    except RuntimeError as exc:
        print(f"gpu_throughput: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summarize(args, config, device, runs, verdicts), indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
