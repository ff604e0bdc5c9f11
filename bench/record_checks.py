"""The record checks of `validate` against reading the same file, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python bench/record_checks.py [--records 200000] [--repeat 3] [--templated 0]

Writes a ShareGPT DPO JSON Lines file (three-turn prompts, about 1.6 KB a record, like
tests/check/test_dataset.py's) in a temporary folder, then times in this same run, --repeat times each,
alternating: reading it (`iter_records`: orjson per line plus the duplicate-key pre-check, the floor under any
check) and checking it (`scan_file` with the entry's RecordChecker: reading plus the fast path on every record and
the explainer on the others). It prints JSON: the median seconds of each and the ratio check / read (1.0 = the
checks cost nothing on top of reading), and the fast path alone on the records held in memory (`fast_us`:
microseconds per record, the best of the repeats, which a busy machine disturbs least). `--templated N` puts a
chat template's marker in every N-th record's prompt, to time the slow path of that check. Run it from two
checkouts to compare a change of the hot loop.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launcher.check.data.files import DataFile, iter_records  # noqa: E402
from launcher.check.data.records import RecordChecker  # noqa: E402
from launcher.check.data.scan import scan_file  # noqa: E402
from launcher.check.data.verdicts import Attr  # noqa: E402

ENTRY = {"formatting": "sharegpt", "ranking": True,
         "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
WORDS = "the of and to in is you that it was for on are as with they at be this have from".split()


def write_records(path: Path, count: int, templated: int) -> None:
    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    with open(path, "w") as handle:
        for index in range(count):
            first = text(85)
            if templated and index % templated == 0:
                first = f"<|im_start|>user\n{first}<|im_end|>"
            record = {"conversations": [{"from": "human", "value": first}, {"from": "gpt", "value": text(55)},
                                        {"from": "human", "value": text(40)}],
                      "chosen": {"from": "gpt", "value": text(100)}, "rejected": {"from": "gpt", "value": text(100)}}
            handle.write(json.dumps(record) + "\n")


def time_read(data_file: DataFile) -> float:
    start = time.perf_counter()
    for _ in iter_records(data_file):
        pass
    return time.perf_counter() - start


def time_check(data_file: DataFile) -> float:
    checker = RecordChecker(Attr.from_entry(ENTRY), "pairwise")
    start = time.perf_counter()
    scan_file(data_file, checker)
    return time.perf_counter() - start


def time_fast_path(records: list[dict]) -> float:
    fast = RecordChecker(Attr.from_entry(ENTRY), "pairwise").fast
    start = time.perf_counter()
    for record in records:
        fast(record)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--templated", type=int, default=0, metavar="N",
                        help="a chat template marker in every N-th record (0: none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "prefs.jsonl"
        write_records(path, args.records, args.templated)
        data_file = DataFile(path, "prefs.jsonl", "json")
        reads, checks = [], []
        for _ in range(args.repeat):
            reads.append(time_read(data_file))
            checks.append(time_check(data_file))
        records = [record for _, _, record in iter_records(data_file)]
    fast = min(time_fast_path(records) for _ in range(args.repeat))
    read, check = statistics.median(reads), statistics.median(checks)
    print(json.dumps({"records": args.records, "templated_every": args.templated, "read_s": round(read, 3),
                      "check_s": round(check, 3), "ratio_check_to_read": round(check / read, 3),
                      "fast_us": round(fast / args.records * 1e6, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
