"""The run directory: what `train` records in `<output_dir>/dpo-launch/` before training starts, and what it
finds in an `output_dir` that already holds a run.

Every file is written atomically (launcher.atomic: a temporary file in the same directory, then
`os.replace`), so a crash or a full disk leaves either the old file or the new one, never half of one.
No heavy imports: package versions come from installed metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from launcher.atomic import atomic_write
from launcher.errors import UserError
from launcher.layout import (
    PLAN_FILE,
    RESOLVED_CONFIG,
    checkpoint_step,
    checkpoints,
    complete_checkpoints,
    run_dir,
    tensorboard_dir,
    weight_files,
)
from launcher.run.rewind import rewind_for_resume
from launcher.versions import package_versions


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


class RunDirRefused(UserError):
    """The output_dir cannot be used as asked (a previous run, no checkpoint to resume, a manifest that could
    not be written); the message says why and what to do, and nothing was started."""


def guard_output_dir(output_dir: Path, values: Mapping[str, Any], consent: str | None) -> dict[str, Any]:
    """Refuse to reuse a directory holding a previous run unless the user said how; the LF keys that say it.

    LLaMA-Factory resumes silently from a checkpoint-* it finds in output_dir (docs/upstream-notes.md#resume-trap), and
    `overwrite_output_dir` lets it write over final weights; dpo-launch asks first.
    """
    found = checkpoints(output_dir)
    if consent == "resume":
        return {"resume_from_checkpoint": str(checkpoint_to_resume(output_dir))}
    if consent == "overwrite":
        return {"overwrite_output_dir": True}
    if values.get("resume_from_checkpoint") or values.get("overwrite_output_dir") is True:
        return {}  # the config itself says what to do with a previous run
    previous = [p.name for p in found] + [p.name for p in weight_files(output_dir)]
    if previous:
        shown = ", ".join(previous[:3]) + (f" and {len(previous) - 3} more" if len(previous) > 3 else "")
        good = complete_checkpoints(output_dir)
        raise RunDirRefused(f"{output_dir} already holds a previous run ({shown}); pass --resume to continue "
                            f"from {good[-1].name if good else 'its last checkpoint'} or --overwrite to start "
                            f"over (or choose another output_dir)")
    return {}


def resumable(output_dir: Path | str) -> tuple[Path | None, list[str]]:
    """(the last complete checkpoint or None, names of the incomplete checkpoints newer than it)."""
    good = complete_checkpoints(output_dir)
    last = checkpoint_step(good[-1]) or 0 if good else -1
    newer = [p.name for p in checkpoints(output_dir) if (checkpoint_step(p) or 0) > last]
    return (good[-1] if good else None), newer


def checkpoint_to_resume(output_dir: Path) -> Path:
    """The last complete checkpoint; newer ones that a fault cut short are named and passed over (HF's own
    choice, the newest by name, would fail to load them)."""
    good, skipped = resumable(output_dir)
    if good is None and not skipped:
        raise RunDirRefused(f"--resume: no checkpoint-N directory in {output_dir} to resume from")
    if good is None:
        raise RunDirRefused(f"--resume: no complete checkpoint-N directory in {output_dir} to resume from "
                            f"({', '.join(skipped)}: no trainer_state.json, the save did not finish); pass "
                            "--overwrite to start over")
    if skipped:
        print(f"dpo-launch train: --resume: passing over {', '.join(skipped)} (incomplete: its save did not "
              f"finish); resuming from {good.name}", flush=True)
    return good


def record_run(resolved_args: Mapping[str, Any], cwd: Path, data_summary: Mapping[str, Any],
               plan: dict | None = None) -> None:
    """Write `<output_dir>/dpo-launch/` before anything trains: args file, YAML copy, versions, datasets, plan.

    All or nothing: every file is written and synced to a temporary file first (launcher.atomic), and the
    temporary files replace the old ones only when all were written, so a full disk leaves the previous
    manifest (or none) as it was, never a mix of two runs' files.
    """
    files = run_files(resolved_args, cwd, data_summary, plan)
    target = run_dir(Path(resolved_args["output_dir"]))
    path = target
    try:
        target.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            for name, text in files.items():
                path = target / name
                handle = stack.enter_context(atomic_write(path))
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())  # a full disk fails here, before any file is replaced
    except OSError as exc:
        message = f"cannot write the run manifest {path}: {_os_error(exc)}; nothing was started"
        raise RunDirRefused(message) from None


def _os_error(exc: OSError) -> str:
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno and exc.strerror else str(exc)


def clear_previous_run(output_dir: Path) -> None:
    """--overwrite: drop the old checkpoints (a later --resume must not pick one up), old event files
    (TensorBoard would show two runs' steps on one curve) and our own records of the old run (logs,
    runtime.json, alerts). Final weights are replaced by the new run."""
    for path in [*checkpoints(output_dir), tensorboard_dir(output_dir), run_dir(output_dir)]:
        if path.is_dir():
            shutil.rmtree(path)
            print(f"dpo-launch train: --overwrite: removed {path}", flush=True)


def rewind_to_checkpoint(output_dir: Path, checkpoint: Path) -> None:
    """--resume: drop TensorBoard records and trainer_log/alerts lines logged after the checkpoint, so no step
    shows twice."""
    for line in rewind_for_resume(output_dir, checkpoint):
        print(f"dpo-launch train: --resume: {line}", file=sys.stderr if line.startswith("warning") else sys.stdout,
              flush=True)


def run_files(resolved_args: Mapping[str, Any], cwd: Path, data_summary: Mapping[str, Any],
              plan: dict | None = None) -> dict[str, str]:
    """The contents of the run directory, as `file name -> text`."""
    files = {
        RESOLVED_CONFIG: dump_json(dict(resolved_args)),
        "resolved_config.yaml": yaml.safe_dump(dict(resolved_args), sort_keys=False, allow_unicode=True),
        "versions.json": dump_json(package_versions()),
        "datasets.json": dump_json(dataset_fingerprints(data_summary, cwd)),
    }
    if plan is not None:
        files[PLAN_FILE] = dump_json(plan)
    return files


def dataset_fingerprints(data_summary: Mapping[str, Any], cwd: Path) -> dict[str, Any]:
    """sha256 and size of each local file behind `dataset` and `eval_dataset`, as `validate` resolved them."""
    datasets: dict[str, Any] = {}
    for name, found in data_summary.get("datasets", {}).items():
        if found.get("source") == "file":
            datasets[name] = {"files": [_fingerprint_file(Path(cwd) / f) for f in found.get("files", [])]}
        else:
            datasets[name] = {"remote": found.get("source")}
    return {"dataset_dir": str(Path(cwd) / str(data_summary.get("dataset_dir", "data"))), "datasets": datasets}


def _fingerprint_file(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return {"path": str(path), "error": exc.strerror or str(exc)}
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
