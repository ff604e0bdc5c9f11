"""`dpo-launch validate` (whole process) against a bare orjson parse of the same file, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python bench/validate_speed.py [--records 200000] [--defects 100] [--jobs N]
                                                               [--repeat 3] [--repo CHECKOUT]

Generates, seeded, a ShareGPT DPO JSON Lines file of the README's kind (three-turn prompts, about 1.75 KB a
record) with --defects seeded defects at seeded lines (a JSON syntax error, a repeated key, a system message out
of place, an empty answer, chosen equal to rejected, a missing column, a role the tags do not declare), in a
temporary folder, then measures in this same run, --repeat times each, alternating, wall clock of whole processes:
- `orjson`: `python -c` that parses every line of the file with orjson.loads (the floor: no check at all), as
  one writes it (`for line in handle`, the default 8 KiB buffer), and `orjson_1mib`: the same with the 1 MiB
  buffer validate reads with (a line that straddles two buffer fills costs, and with 8 KiB many do), so that
  validate's reading gets no edge over the floor (`ratio_to_orjson_1mib`);
- `validate --jobs 1` and `validate --jobs N` (N: --jobs, default the available cores), `--format json`, every
  diagnostic; the run checks that every seeded defect is reported (an error or a warning) at its line, and that
  both give the same diagnostics;
- the config-only path: `validate --no-data` on the same config, against `python -c pass`.
The processes run as an installed dpo-launch does, with bytecode cached (one untimed run of each first). It
prints one JSON object: records/s of each, the ratio of validate's speed to orjson's (1.0 = as fast as a bare
parse; higher is faster), the peak RSS of each (wait4: the largest process of its tree), the medians, the
config-only time over `python -c pass`, and whether every defect was found and every job count reported the
same diagnostics (exit 1 if not). On a machine others share, wall clock varies with their load: the CPU time
of each process tree (`median_cpu_s`, from wait4) varies less, and `ratio_to_orjson_cpu` is the one-job ratio
from it; `paired_ratio_to_orjson` is the median of each repeat's own ratio (its orjson run against the validate
runs a second later), which a load that comes and goes between repeats moves less. --repo times another
checkout (one from before --jobs: one process only).
Speed figures are this machine's; only the ratios mean something elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORDS = ("the of and to in is you that it was for on are as with they at be this have from what when which "
         "there can an your all were we more will one would their said each about how up out them then").split()
DEFECTS = ("syntax", "repeated-key", "system-late", "empty-answer", "same-answers", "no-rejected", "bad-role")
ENTRY = {"file_name": "bench.jsonl", "formatting": "sharegpt", "ranking": True,
         "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
ORJSON_PARSE = """\
import sys
import orjson
loads = orjson.loads
with open(sys.argv[1], "rb", buffering=int(sys.argv[2])) as handle:
    for line in handle:
        try:
            loads(line)
        except ValueError:
            pass
"""


def record_line(rng: random.Random, defect: str | None) -> str:
    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    conv = [{"from": "human", "value": text(85)}, {"from": "gpt", "value": text(55)},
            {"from": "human", "value": text(40)}]
    record: dict = {"conversations": conv, "chosen": {"from": "gpt", "value": text(rng.randint(80, 120))},
                    "rejected": {"from": "gpt", "value": text(rng.randint(80, 120))}}
    if defect == "system-late":
        conv[1] = {"from": "system", "value": text(5)}
    elif defect == "empty-answer":
        record["chosen"]["value"] = ""
    elif defect == "same-answers":
        record["rejected"] = dict(record["chosen"])
    elif defect == "no-rejected":
        del record["rejected"]
    elif defect == "bad-role":
        conv[0]["from"] = "narrator"
    line = json.dumps(record)
    if defect == "syntax":
        line = line[:-1]  # the closing brace is missing
    elif defect == "repeated-key":
        line = line[:-1] + ', "chosen": {"from": "gpt", "value": "again"}}'
    return line


def write_data(path: Path, count: int, defects: int, seed: int = 0) -> dict[int, str]:
    """Write the file; {1-based line: defect} of the seeded defects."""
    rng = random.Random(seed)
    seeded = {line: DEFECTS[i % len(DEFECTS)] for i, line in
              enumerate(sorted(rng.sample(range(1, count + 1), min(defects, count))))}
    with open(path, "w", encoding="utf-8") as handle:
        for line in range(1, count + 1):
            handle.write(record_line(rng, seeded.get(line)) + "\n")
    return seeded


def write_workspace(root: Path, count: int, defects: int) -> tuple[Path, dict[int, str]]:
    (root / "data").mkdir(parents=True)
    seeded = write_data(root / "data" / "bench.jsonl", count, defects)
    (root / "data" / "dataset_info.json").write_text(json.dumps({"bench": ENTRY}), encoding="utf-8")
    config = {"model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "stage": "dpo", "do_train": True,
              "finetuning_type": "lora", "lora_target": "all", "dataset": "bench", "dataset_dir": "data",
              "template": "qwen", "cutoff_len": 1024, "output_dir": "out", "per_device_train_batch_size": 1,
              "report_to": "none"}
    path = root / "config.yaml"
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in config.items()), encoding="utf-8")
    return path, seeded


def environment(pycache: Path, repo: Path) -> dict[str, str]:
    """As an installed dpo-launch runs: bytecode cached (in a temp folder, not the checkout)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds of its tree, peak RSS in MB of the largest process of its tree, stdout) of one
    process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stdout = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)  # its usage and its waited-for children's (the workers)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout.decode()


def found_lines(output: str, display: str) -> set[int]:
    diagnostics = json.loads(output)["diagnostics"]
    return {d["line"] for d in diagnostics if d.get("file") == display and d["severity"] != "note" and d["line"]}


def commands(config: Path, data: Path, jobs: int, has_jobs: bool) -> dict[str, list[str]]:
    validate = [sys.executable, "-m", "launcher", "validate", str(config), "--format", "json"]
    runs = {"orjson": [sys.executable, "-c", ORJSON_PARSE, str(data), "-1"],
            "orjson_1mib": [sys.executable, "-c", ORJSON_PARSE, str(data), str(1 << 20)]}
    if has_jobs:
        runs |= {"jobs_1": validate + ["--jobs", "1"], f"jobs_{jobs}": validate + ["--jobs", str(jobs)]}
    else:  # a checkout from before --jobs: one process
        runs["jobs_1"] = validate
    return runs | {"python_pass": [sys.executable, "-c", "pass"],
                   "config_only": [sys.executable, "-m", "launcher", "validate", str(config), "--no-data"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--defects", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to time (default: this one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        config, seeded = write_workspace(root / "work", args.records, args.defects)
        data = root / "work" / "data" / "bench.jsonl"
        size = data.stat().st_size
        env = environment(root / "pycache", args.repo.resolve())
        help_text = subprocess.run([sys.executable, "-m", "launcher", "validate", "--help"], env=env,
                                   cwd=root / "work", capture_output=True, text=True, check=False).stdout
        runs = commands(config, data, args.jobs, "--jobs" in help_text)
        subprocess.run(["sync"], check=False)  # neither side pays for the file's write-back
        for command in runs.values():  # warm: bytecode written, the file in the page cache
            timed(command, root / "work", env)
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        peak: dict[str, float] = {}
        outputs: dict[str, str] = {}
        for _ in range(args.repeat):
            for name, command in runs.items():
                wall, cpu_seconds, rss, out = timed(command, root / "work", env)
                seconds[name].append(wall)
                cpu[name].append(cpu_seconds)
                peak[name] = max(peak.get(name, 0.0), rss)
                outputs.setdefault(name, out)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    checked = [name for name in runs if name.startswith("jobs")]
    missed = {name: sorted(set(seeded) - found_lines(outputs[name], "data/bench.jsonl")) for name in checked}
    same = all(json.loads(outputs[name])["diagnostics"] == json.loads(outputs["jobs_1"])["diagnostics"]
               for name in checked)
    report = {"records": args.records, "bytes": size, "defects": len(seeded), "cores": len(os.sched_getaffinity(0)),
              "records_per_s": {name: round(args.records / median[name])
                                for name in ["orjson", "orjson_1mib", *checked]},
              "ratio_to_orjson": {name: round(median["orjson"] / median[name], 3) for name in checked},
              "ratio_to_orjson_1mib": {name: round(median["orjson_1mib"] / median[name], 3) for name in checked},
              "ratio_to_orjson_cpu": round(median_cpu["orjson"] / median_cpu["jobs_1"], 3),
              # each repeat's orjson run against the validate runs right after it: what the machine's load did
              # between repeats cancels out (the ratio of medians above compares runs minutes apart)
              "paired_ratio_to_orjson": {name: round(statistics.median(
                  base / value for base, value in zip(seconds["orjson"], seconds[name], strict=True)), 3)
                  for name in checked},
              "peak_rss_mb": {name: round(value, 1) for name, value in peak.items()},
              "median_s": {name: round(value, 3) for name, value in median.items()},
              "median_cpu_s": {name: round(value, 3) for name, value in median_cpu.items()},
              "config_only_over_python_s": round(median["config_only"] - median["python_pass"], 3),
              "defects_missed": missed, "all_defects_found": not any(missed.values()), "same_diagnostics": same}
    print(json.dumps(report))
    return 0 if report["all_defects_found"] and same else 1


if __name__ == "__main__":
    sys.exit(main())
