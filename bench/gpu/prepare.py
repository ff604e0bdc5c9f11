"""Download the wheels the GPU box lacks (wheels.toml) into .whl/, check them, and print their sizes and total.

    python bench/gpu/prepare.py [--dest .whl] [--write-lock]      (bench/gpu/prepare.sh runs this)

Runs on a CPU machine with access to PyPI. Binary wheels are downloaded for CPython 3.12, manylinux x86_64
(`pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform ...`); DeepSpeed,
which PyPI has only as a source distribution, is built here into a pure wheel (DS_BUILD_OPS=0: its CUDA ops are
JIT-built on the box if a run needs one). Everything lands in a staging folder first; only when the folder holds
one wheel per pin, each for cp312 x86_64, under 64 MiB in all, and each matches wheels.lock.json (file name, and
sha256 for downloaded wheels), does it replace `--dest`. `--write-lock` records the downloaded files as the lock
instead of checking against it (review the diff). Exit 0 ok, 1 failed (the cause on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import wheels

REPO = wheels.HERE.parent.parent
MARKER = ".prepared-by-bench-gpu"  # a --dest holding it is ours to replace
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class PrepareError(Exception):
    """Something that stops the preparation; the message is the whole diagnostic."""


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], check=False, capture_output=True, text=True,
                            env=env)
    if result.returncode != 0:
        raise PrepareError(f"pip {args[0]} failed (exit {result.returncode}):\n{result.stdout[-3000:]}"
                           f"{result.stderr[-3000:]}")


def download(pins: dict[str, wheels.Pin], staging: Path) -> None:
    binary = [f"{pin.name}=={pin.version}" for pin in pins.values() if pin.build == "wheel"]
    platforms = [arg for platform in wheels.PLATFORMS for arg in ("--platform", platform)]
    pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
        *platforms, "-d", str(staging), *binary)
    for pin in pins.values():
        if pin.build == "sdist":  # ops left to JIT: a pure wheel, whatever CUDA the box has
            pip("wheel", "--no-deps", "--no-binary", pin.name, "-w", str(staging), f"{pin.name}=={pin.version}",
                env=dict(os.environ, DS_BUILD_OPS="0"))


def lock_problems(entries: list[dict], lock: dict) -> list[str]:
    """Where the downloaded wheels differ from wheels.lock.json."""
    locked = {entry["name"]: entry for entry in lock["wheels"]}
    problems = []
    for entry in entries:
        old = locked.pop(entry["name"], None)
        if old is None:
            problems.append(f"{entry['file']}: not in the lock")
        elif old["file"] != entry["file"] or (not entry["built"] and old["sha256"] != entry["sha256"]):
            problems.append(f"{entry['file']} (sha256 {entry['sha256'][:12]}): the lock has {old['file']} "
                            f"(sha256 {old['sha256'][:12]})")
    problems += [f"{name}: in the lock but not downloaded" for name in locked]
    return problems


def write_lock(entries: list[dict]) -> None:
    lock = {"comment": "Written by bench/gpu/prepare.sh --write-lock; checked by tests/bench/test_gpu_wheels.py.",
            "python": "cp312", "platforms": list(wheels.PLATFORMS), "wheels": entries,
            "total_size": sum(entry["size"] for entry in entries)}
    wheels.LOCK_FILE.write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")


def replace_dest(staging: Path, dest: Path) -> None:
    """Move the checked wheels into place; a non-empty --dest that this script did not write is refused."""
    if dest.exists():
        if any(dest.iterdir()) and not (dest / MARKER).is_file():
            raise PrepareError(f"{dest} holds files this script did not write; remove it or pass another --dest")
        shutil.rmtree(dest)
    (staging / MARKER).write_text("bench/gpu/prepare.py\n", encoding="utf-8")
    staging.rename(dest)


def prepare(dest: Path, write: bool) -> list[dict]:
    pins, _ = wheels.load_pins()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-staging-", dir=dest.parent))
    try:
        download(pins, staging)
        files = sorted(staging.glob("*.whl"))
        if problems := wheels.folder_problems(files, pins):
            raise PrepareError("the downloaded wheels are not right:\n  " + "\n  ".join(problems))
        entries = [wheels.lock_entry(path, pins[wheels.wheel_metadata(path)[0]]) for path in files]
        if write:
            write_lock(entries)
        elif problems := lock_problems(entries, json.loads(wheels.LOCK_FILE.read_text(encoding="utf-8"))):
            raise PrepareError("the downloaded wheels differ from bench/gpu/wheels.lock.json (if PyPI changed "
                               "on purpose, rerun with --write-lock and review the diff):\n  " + "\n  ".join(problems))
        replace_dest(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entries


def size_table(entries: list[dict]) -> str:
    width = max(len(entry["file"]) for entry in entries)
    lines = [f"{entry['file']:<{width}}  {entry['size'] / 2**20:6.2f} MiB" for entry in entries]
    total = sum(entry["size"] for entry in entries)
    lines.append(f"{'total (' + str(len(entries)) + ' wheels)':<{width}}  {total / 2**20:6.2f} MiB "
                 f"(limit {wheels.SIZE_LIMIT / 2**20:.0f} MiB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="bench/gpu/prepare.sh",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=REPO / ".whl", help="the wheel folder (default: .whl)")
    parser.add_argument("--write-lock", action="store_true", help="record the downloads as wheels.lock.json")
    args = parser.parse_args(argv)
    try:
        entries = prepare(args.dest.resolve(), args.write_lock)
    except PrepareError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(size_table(entries))
    print(f"wheels in {args.dest}; on the GPU box run: bash bench/gpu/check.sh")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
