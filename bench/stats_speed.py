"""`dpo-launch validate --stats` vs LLaMA-Factory's own preprocessing of the same dataset, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python bench/stats_speed.py [--records 200000] [--workers 2] [--repeat 3]

Generates a ShareGPT DPO file (three-turn prompts, about 1.6 KB a record, like tests/test_dataset.py's) in a
temporary folder, then measures in this same run:
- LF: `get_dataset(template, model_args, data_args, training_args, stage="rm", tokenizer)` as `run_dpo` calls
  it, with preprocessing_num_workers = --workers and a fresh datasets cache (timed around get_dataset only,
  after its imports and tokenizer load);
- ours: the whole `python -m launcher validate CONFIG --stats` command, wall clock (validation of every
  record, worker start, imports, tokenizer load, measuring, histogram), with --workers processes.
Ours runs --repeat times (default 3, before LF's single run) and the ratio uses their median: one run of ~30 s
on a shared 2-core machine varies by several seconds, LF's ~3 minutes much less in proportion. The data file
is synced to disk before either starts, so neither pays for its write-back. It prints both times and the
ratio LF / ours. Both use the tiny model's tokenizer (a byte-level BPE with a
512-token vocabulary, docs/upstream-notes.md#tiny-model), built into <repo>/.cache/tiny-llama if missing.
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
TINY_MODEL = REPO / ".cache" / "tiny-llama"
WORDS = ["the", "of", "and", "to", "in", "is", "you", "that", "it", "was", "for", "on", "are", "as", "with", "they",
         "at", "be", "this", "have", "from"]


def write_data(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            conv = [{"from": "human", "value": text(85)}, {"from": "gpt", "value": text(55)},
                    {"from": "human", "value": text(40)}]
            record = {"conversations": conv, "chosen": {"from": "gpt", "value": text(rng.randint(60, 140))},
                      "rejected": {"from": "gpt", "value": text(rng.randint(60, 140))}}
            handle.write(json.dumps(record) + "\n")


def write_workspace(root: Path, count: int, workers: int) -> Path:
    (root / "data").mkdir(parents=True)
    write_data(root / "data" / "bench.jsonl", count)
    entry = {"file_name": "bench.jsonl", "formatting": "sharegpt", "ranking": True,
             "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
    (root / "data" / "dataset_info.json").write_text(json.dumps({"bench": entry}), encoding="utf-8")
    config = {"model_name_or_path": str(TINY_MODEL), "stage": "dpo", "do_train": True, "finetuning_type": "lora",
              "lora_target": "all", "dataset": "bench", "dataset_dir": "data", "template": "default",
              "cutoff_len": 1024, "preprocessing_num_workers": workers, "overwrite_cache": True,
              "output_dir": str(root / "out"), "per_device_train_batch_size": 1, "report_to": "none"}
    path = root / "config.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def lf_baseline(config_path: str) -> None:
    """Runs in a subprocess: LF's own preprocessing of the dataset, timed around get_dataset."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args = json.loads(Path(config_path).read_text(encoding="utf-8"))
    model_args, data_args, training_args, _, _ = get_train_args(args)
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    start = time.perf_counter()
    dataset = get_dataset(template, model_args, data_args, training_args, stage="rm", **module)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": len(dataset["train_dataset"])}))


def run_lf(root: Path, config: Path, env: dict) -> dict:
    env = dict(env, HF_DATASETS_CACHE=str(root / "hf-datasets-cache"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--lf-baseline", str(config)], cwd=root, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"LLaMA-Factory baseline failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall": wall}


def run_ours(root: Path, config: Path, env: dict, workers: int) -> dict:
    env = dict(env, DPO_LAUNCH_STATS_PROCESSES=str(workers))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "launcher", "validate", str(config), "--stats", "--format", "json"],
                          cwd=root, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"dpo-launch validate --stats failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                 f"{done.stderr[-3000:]}")
    stats = json.loads(done.stdout)["stats"]["datasets"]["bench"]
    return {"wall": wall, "measuring": stats["seconds"], "pairs": stats["pairs"], "mode": stats["tokenizer_mode"],
            "processes": stats["processes"], "truncated": stats["truncation"]["truncated"]}


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2, help="LF's preprocessing_num_workers and our processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours; the ratio uses their median")
    parser.add_argument("--lf-baseline", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lf_baseline:
        lf_baseline(args.lf_baseline)
        return 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    subprocess.run([sys.executable, str(REPO / "scripts" / "tiny_model.py"), str(TINY_MODEL)], cwd=REPO, env=env,
                   check=True,
                   capture_output=True)
    with tempfile.TemporaryDirectory(prefix="stats-speed-") as tmp:
        root = Path(tmp)
        config = write_workspace(root, args.records, args.workers)
        size = (root / "data" / "bench.jsonl").stat().st_size / 1e6
        os.sync()
        print(f"{args.records} ShareGPT DPO records ({size:.0f} MB), tiny tokenizer, {args.workers} workers each")
        runs = [run_ours(root, config, env, args.workers) for _ in range(max(1, args.repeat))]
        lf = run_lf(root, config, env)
    ours = dict(runs[0], wall=statistics.median(r["wall"] for r in runs),
                measuring=statistics.median(r["measuring"] for r in runs))
    print(f"LLaMA-Factory get_dataset:        {lf['seconds']:8.1f} s  ({lf['rows']} pairs; whole process "
          f"{lf['wall']:.1f} s)")
    print(f"dpo-launch validate --stats:      {ours['wall']:8.1f} s  (median of {len(runs)} runs: "
          + ", ".join(f"{r['wall']:.1f}" for r in runs) + ")")
    print(f"                                            (whole command; median measuring alone "
          f"{ours['measuring']:.1f} s, {ours['pairs']} pairs, tokenizer mode {ours['mode']}, "
          f"{ours['processes']} processes)")
    print(f"ratio LF get_dataset / ours:      {lf['seconds'] / ours['wall']:8.1f}x  (whole process vs whole "
          f"command: {lf['wall'] / ours['wall']:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
