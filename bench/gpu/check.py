"""The GPU check: the CUDA path of dpo-launch end to end, one table, in a few minutes with no network.

    bash bench/gpu/check.sh [--out DIR] [--cpu-smoke] [--steps N] [--budget-s S]

check.sh installs the carried wheels (bench/gpu/prepare.sh put them in .whl/) into a temporary folder ahead of
the box's own packages, then runs this. In order: the stack probe (bench/gpu/probe.py: versions, imports, the
GPU, one NCCL all_reduce, flash-attn, the carried wheels' requirements); a random-init ~0.5B Llama built locally
(scripts/small_model.py --size 500m); `dpo-launch plan` of each config; then bf16 DPO trainings of a few dozen
steps: LoRA through dpo-launch, the same config through llamafactory-cli (the tokens/s ratio, measured as
bench/gpu_throughput.py measures it), full fine-tuning, full fine-tuning with DeepSpeed ZeRO-2, and LoRA with
fa2 when flash_attn imports. The table (rows.py says what each status means) goes to stdout and
<out>/table.md, everything measured to <out>/results.json, and the logs, configs and per-run trainer logs to
<out>/logs.tar.gz. --out defaults to $OUT/gpu-check when OUT is set, else ./gpu-check; it must not hold files.

--cpu-smoke runs the same flow on CPU without wheels: the tiny model (scripts/tiny_model.py), fp32, 3 steps;
rows that need a GPU say why they are skipped. Exit 0: no row failed; 1: a row failed; 2: usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import probe as probe_module
import rows
import runs
import wheels

REPO = runs.REPO
GPU_BUDGET_S = 450  # leaves check.sh's install and the teardown inside 8 minutes
PROBE_TIMEOUT_S, MODEL_TIMEOUT_S = 180, 300  # a hung NCCL init or a slow build must not eat the budget
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Nothing on the box can reach a hub: fail fast instead of waiting on timeouts. RECORD_VRAM=1: see runs.py.
RUN_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RECORD_VRAM": "1"}


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0 but got {text!r}")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="bench/gpu/check.sh", description=__doc__.splitlines()[0])
    default_out = Path(os.environ["OUT"]) / "gpu-check" if os.environ.get("OUT") else Path("gpu-check")
    parser.add_argument("--out", type=Path, default=default_out, help="table, results and logs (must be empty)")
    parser.add_argument("--cpu-smoke", action="store_true", help="run the flow on CPU with the tiny model")
    parser.add_argument("--steps", type=positive, help="max_steps of each run (default 30; 3 with --cpu-smoke)")
    parser.add_argument("--budget-s", type=positive, help=f"start no run past this (default {GPU_BUDGET_S} s; "
                                                          "no limit with --cpu-smoke)")
    parser.add_argument("--site", type=Path, help="(check.sh) where the carried wheels are installed")
    parser.add_argument("--wheels", type=Path, help="(check.sh) the wheel folder to check before installing it")
    parser.add_argument("--install-log", type=Path, help="(check.sh) pip's log, kept with the logs")
    parser.add_argument("--validate-only", action="store_true", help="(check.sh) check the arguments and stop")
    args = parser.parse_args(argv)
    args.steps = args.steps or (3 if args.cpu_smoke else 30)
    args.budget_s = args.budget_s or (None if args.cpu_smoke else GPU_BUDGET_S)
    return args


def usage_problems(args: argparse.Namespace) -> list[str]:
    problems = []
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        problems.append(f"--out {args.out}: already holds files; remove them or pass another --out")
    if args.wheels is not None and not args.cpu_smoke:
        found = sorted(args.wheels.glob("*.whl")) if args.wheels.is_dir() else []
        if not found:
            problems.append(f"{args.wheels}: no wheels; run bash bench/gpu/prepare.sh on a machine with PyPI "
                            "first and bring the folder along")
        else:
            problems += [f"{args.wheels}: {problem}" for problem in
                         wheels.folder_problems(found, wheels.load_pins()[0])]
    return problems


def run_probe(logs: Path, site: Path | None) -> dict:
    out = logs / "probe.json"
    command = [sys.executable, str(Path(probe_module.__file__)), "--json-out", str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with open(logs / "probe.log", "w", encoding="utf-8") as log:
        try:
            subprocess.run(command + (["--site", str(site)] if site else []), cwd=REPO, env=env, stdout=log,
                           stderr=subprocess.STDOUT, timeout=PROBE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"the probe ran past {PROBE_TIMEOUT_S} s and was stopped; see logs/probe.log"}
    if not out.is_file():
        return {"error": "the probe did not finish; see logs/probe.log"}
    return json.loads(out.read_text(encoding="utf-8"))


def build_model(smoke: bool, logs: Path) -> dict:
    """The tiny model (smoke) or the random-init ~0.5B Llama, built in a subprocess into .cache/ (reused)."""
    if smoke:
        path, command, description = (REPO / ".cache" / "tiny-llama", ["tiny_model.py"],
                                      "tiny Llama (scripts/tiny_model.py), fp32")
    else:
        path, command, description = (REPO / ".cache" / "gpu-check-llama-500m", ["small_model.py", "--size", "500m"],
                                      "Llama, 16 layers, hidden 1536, GQA 12/4, bf16")
    started = time.perf_counter()
    with open(logs / "model.log", "w", encoding="utf-8") as log:
        try:
            result = subprocess.run([sys.executable, str(REPO / "scripts" / command[0]), str(path), *command[1:]],
                                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=MODEL_TIMEOUT_S,
                                    check=False)
            returncode = result.returncode
        except subprocess.TimeoutExpired:
            returncode = f"stopped after {MODEL_TIMEOUT_S} s"
    seconds = time.perf_counter() - started
    error = None if returncode == 0 else f"building it failed (exit {returncode}); see logs/model.log"
    return {"path": str(path), "description": description, "seconds": round(seconds, 1), "error": error}


def train_cases(args, model: Path, work: Path, logs: Path, deadline: float | None, flash: bool) -> dict[str, dict]:
    """Every case in order; a case that would start past the deadline is skipped, a started one gets what is left."""
    gpu = not args.cpu_smoke
    names = ["lora", "lora-llamafactory-cli", "full", "full-precompute", "full-zero2"] + (["lora-fa2"] if flash else [])
    results = {}
    for name in names:
        config = runs.write_config(runs.CASES[name], model, work, args.steps, gpu)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left < 30:
            results[name] = {"ok": False, "skipped": f"out of the time budget ({args.budget_s} s)"}
        else:
            results[name] = runs.train(runs.CASES[name], config, logs, left)
        results[name]["case"] = name
    return results


def table_rows(args, probe: dict, model: dict | None, plans: dict, results: dict, flash_skip: str | None) -> list:
    smoke, precision = args.cpu_smoke, "fp32" if args.cpu_smoke else "bf16"
    site = str(args.site) if args.site else None
    table = [rows.stack_row(probe), rows.device_row(probe, smoke), rows.carried_row(probe, site),
             rows.distributed_row(probe)]
    if model is None:
        return table
    parameters = next((plan.get("parameters") for plan in plans.values() if plan.get("parameters")), None)
    table.append(rows.model_row(model, parameters))
    if model["error"]:
        return table
    table += [rows.train_row(case, results[case], precision, args.steps) for case in rows.TRAIN_ROWS]
    table.append(rows.throughput_row(results["lora"], results["lora-llamafactory-cli"], smoke))
    table.append(rows.precompute_row(results["full"], results["full-precompute"], not smoke))
    table.append(rows.attention_row(results["lora"], results.get("lora-fa2"), flash_skip))
    table += [rows.memory_row(case, results[case], plans[case], not smoke) for case in rows.MEMORY_ROWS]
    return table


def flash_skip_reason(args, probe: dict) -> str | None:
    if args.cpu_smoke:
        return "--cpu-smoke: flash-attn needs a CUDA GPU"
    flash = probe.get("flash_attn", {})
    return None if flash.get("importable") else f"{flash.get('why', 'flash_attn not probed')}"


def check(args, work: Path) -> tuple[list, dict]:
    logs = work / "logs"
    logs.mkdir()
    deadline = None if args.budget_s is None else time.monotonic() + args.budget_s
    probe = run_probe(logs, args.site)
    if "error" in probe:
        return [rows.Row("stack imports", rows.FAIL, probe["error"])], {"probe": probe}
    usable = all(error is None for error in probe["imports"].values()) and (
        args.cpu_smoke or probe["device"]["cuda"])
    model, plans, results, flash_skip = None, {}, {}, flash_skip_reason(args, probe)
    if usable:
        model = build_model(args.cpu_smoke, logs)
    if model and not model["error"]:
        runs.gpu_throughput.write_dataset(work / "data", (runs.gpu_throughput.CPU_SHAPE if args.cpu_smoke
                                                          else runs.gpu_throughput.GPU_SHAPE)[3])
        for case in rows.MEMORY_ROWS:
            config = runs.write_config(runs.CASES[case], Path(model["path"]), work, args.steps, not args.cpu_smoke)
            plans[case] = runs.plan_estimate(config, logs / f"plan-{case}.json")
        results = train_cases(args, Path(model["path"]), work, logs, deadline, flash_skip is None)
    table = table_rows(args, probe, model, plans, results, flash_skip)
    return table, {"probe": probe, "model": model, "plans": plans, "runs": results}


def write_outputs(out: Path, work: Path, table: list, measured: dict, title: str, install_log: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(rows.render(table, title), encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"rows": [row.as_dict() for row in table], **measured}, indent=2)
                                      + "\n", encoding="utf-8")
    with tarfile.open(out / "logs.tar.gz", "w:gz") as archive:
        for path in sorted(work.rglob("*")):
            relative = path.relative_to(work)
            kept = (path.suffix in (".log", ".json", ".jsonl", ".yaml") and relative.parts[0] != "data"
                    and not path.name.startswith("tokenizer"))
            if path.is_file() and kept and path.stat().st_size < 16 * 2**20:
                archive.add(path, arcname=str(relative))
        if install_log is not None and install_log.is_file():
            archive.add(install_log, arcname="logs/install.log")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if problems := usage_problems(args):
        for problem in problems:
            print(f"check: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.validate_only:
        return EXIT_OK
    for key, value in RUN_ENV.items():
        os.environ.setdefault(key, value)
    if args.cpu_smoke:  # DeepSpeed JIT-builds its CPU op once; share the build with the test suite's
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    table, measured = check(args, work)
    elapsed = time.monotonic() - started
    mode = "CPU smoke run (not a measurement)" if args.cpu_smoke else "GPU"
    title = f"# dpo-launch GPU check: {mode}, {args.steps} steps per run, {elapsed:.0f} s"
    write_outputs(args.out, work, table, dict(measured, mode=mode, elapsed_s=round(elapsed, 1)), title,
                  args.install_log)
    shutil.rmtree(work, ignore_errors=True)
    print(rows.render(table, title))
    print(f"table, results and logs: {args.out}")
    return EXIT_FAILED if any(row.status == rows.FAIL for row in table) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
