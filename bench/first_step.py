"""Time to the first optimizer step: `dpo-launch train` vs `llamafactory-cli train`, same config, same run.

Both runs train the tiny demo model on CPU; the clock stops when the first training log line appears in
`<output_dir>/trainer_log.jsonl` (LLaMA-Factory's LogCallback writes it after step 1 with logging_steps 1).
The result is a ratio against the baseline measured in this same run, never an absolute time.

    .venv/bin/python bench/first_step.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TINY_MODEL = REPO / ".demo" / "tiny-llama"


def first_step_seconds(argv: list[str], output_dir: Path, env: dict[str, str]) -> float:
    """Start `argv`, return seconds until trainer_log.jsonl has its first step, then stop the run."""
    log = output_dir / "trainer_log.jsonl"
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        while process.poll() is None:
            if log.exists() and log.read_text(encoding="utf-8").strip():
                return time.perf_counter() - start
            time.sleep(0.02)
        raise RuntimeError(f"{argv[0]} exited with {process.returncode} before the first step")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=60)


def write_config(workdir: Path, name: str) -> tuple[Path, Path]:
    config = yaml.safe_load((REPO / "config" / "demo_dpo.yaml").read_text(encoding="utf-8"))
    output_dir = workdir / name
    config.update(model_name_or_path=str(TINY_MODEL), dataset_dir=str(REPO / "data"),
                  output_dir=str(output_dir), max_steps=5, logging_steps=1, report_to="tensorboard")
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, output_dir


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    subprocess.run([sys.executable, str(REPO / "scripts" / "tiny_model.py"), str(TINY_MODEL)], check=True, cwd=REPO)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    times: dict[str, list[float]] = {"llamafactory-cli": [], "dpo-launch": []}
    with tempfile.TemporaryDirectory(prefix="bench-first-step-") as tmp:
        for repeat in range(repeats):  # alternate so drift in machine load hits both sides alike
            for tool in times:
                config, output_dir = write_config(Path(tmp), f"{tool}-{repeat}")
                argv = ([str(VENV_BIN / "llamafactory-cli"), "train", str(config)] if tool == "llamafactory-cli"
                        else [sys.executable, "-m", "launcher", "train", str(config), "--no-monitor"])
                times[tool].append(first_step_seconds(argv, output_dir, env))
                shutil.rmtree(output_dir, ignore_errors=True)
    baseline = statistics.median(times["llamafactory-cli"])
    ours = statistics.median(times["dpo-launch"])
    result = {"repeats": repeats, "seconds": times, "median_baseline_s": round(baseline, 2),
              "median_dpo_launch_s": round(ours, 2), "ratio": round(ours / baseline, 3), "goal": "<= 1.10"}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
