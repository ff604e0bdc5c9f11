"""The long fuzzing run of issue 6: `validate` over many mutated configs and records, in-process.

    OMP_NUM_THREADS=1 python bench/fuzz_long.py [--configs 10000] [--records 100000] [--seed 0]

Uses the generators of tests/test_fuzz_validate.py with a seeded `random.Random` and checks the same
properties: no exception, every error located. Prints counts, failures (with the input saved under
--failures) and time. Exit 1 when any failure was found.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_adversarial_inputs import make_workspace  # noqa: E402
from test_fuzz_validate import (  # noqa: E402
    check_located,
    config_text,
    data_bytes,
    validate_config_bytes,
    validate_data_bytes,
)

RECORDS_PER_FILE = 50


def run_one(check, root: Path, data: bytes, failures: list, failure_dir: Path, label: str) -> None:
    try:
        check_located(check(root, data))
    except Exception:  # a failure of the property, recorded with its input
        path = failure_dir / f"{label}-{len(failures)}.bin"
        path.write_bytes(data)
        failures.append((label, path, traceback.format_exc(limit=3).strip().splitlines()[-1]))


def fuzz_configs(count: int, seed: int, root: Path, failure_dir: Path) -> tuple[list, float]:
    rng, failures, start = random.Random(seed), [], time.perf_counter()
    for index in range(count):
        suffix = ".json" if index % 5 == 0 else ".yaml"
        run_one(lambda r, d, suffix=suffix: validate_config_bytes(r, d, suffix), root, config_text(rng), failures,
                failure_dir, "config")
    return failures, time.perf_counter() - start


def fuzz_records(count: int, seed: int, root: Path, failure_dir: Path) -> tuple[list, float, int]:
    rng, failures, start, files = random.Random(seed + 1), [], time.perf_counter(), 0
    made = 0
    while made < count:
        batch = min(RECORDS_PER_FILE, count - made)
        run_one(validate_data_bytes, root, data_bytes(rng, batch), failures, failure_dir, "data")
        made, files = made + batch, files + 1
    return failures, time.perf_counter() - start, files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failures", type=Path, default=Path(tempfile.gettempdir()) / "dpo-launch-fuzz-failures")
    args = parser.parse_args(argv)
    args.failures.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_workspace(Path(tmp))
        config_failures, config_time = fuzz_configs(args.configs, args.seed, root, args.failures)
        print(f"configs: {args.configs} validated in {config_time:.1f} s "
              f"({args.configs / config_time:.0f}/s), {len(config_failures)} failures")
        root = make_workspace(Path(tmp) / "data-run")
        data_failures, data_time, files = fuzz_records(args.records, args.seed, root, args.failures)
        print(f"records: {args.records} in {files} files validated in {data_time:.1f} s "
              f"({args.records / data_time:.0f}/s), {len(data_failures)} failures")
    for label, path, last in (config_failures + data_failures)[:20]:
        print(f"  {label}: {path}: {last}")
    print(f"total: {len(config_failures) + len(data_failures)} failures in {config_time + data_time:.1f} s")
    return 1 if config_failures or data_failures else 0


if __name__ == "__main__":
    sys.exit(main())
