"""The run directory: what `train` records in `<output_dir>/dpo-launch/` before training starts, and what it
finds in an `output_dir` that already holds a run (which checkpoint `--resume` takes, what the config's own
`overwrite_output_dir` / `resume_from_checkpoint` mean). Removing a previous run is launcher.run.overwrite.

Every file is written atomically (launcher.atomic: a temporary file in the same directory, then
`os.replace`), so a crash or a full disk leaves either the old file or the new one, never half of one.
No heavy imports: package versions come from installed metadata.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from launcher.atomic import atomic_write
from launcher.errors import UserError
from launcher.fingerprint import file_sha256
from launcher.layout import (
    LAUNCHES_FILE,
    PLAN_FILE,
    RESOLVED_CONFIG,
    checkpoint_problem,
    checkpoint_step,
    checkpoints,
    complete_checkpoints,
    run_dir,
    weight_files,
)
from launcher.run.rewind import rewind_for_resume
from launcher.versions import package_versions


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


class RunDirRefused(UserError):
    """The output_dir cannot be used as asked (a previous run, no checkpoint to resume, a manifest that could
    not be written); the message says why and what to do, and nothing was started."""


def effective_consent(output_dir: Path, values: Mapping[str, Any], consent: str | None, cwd: Path,
                      say: bool = True) -> str | None:
    """What the user asked for about a previous run, with the config's own keys counted in.

    `overwrite_output_dir: true` means exactly `--overwrite` (LLaMA-Factory alone would start a new run beside
    the old checkpoints, and a later resume would pick the old run's last one). Contradictions are refused
    here, before anything is deleted: `--resume` with that key, and starting over while the config resumes
    from a checkpoint inside output_dir (the overwrite would delete it).
    """
    if values.get("overwrite_output_dir") is True:
        if consent == "resume":
            raise RunDirRefused("--resume contradicts overwrite_output_dir: true in the config (which starts over, "
                                "as --overwrite does); remove the key to resume, or drop --resume to start over")
        if consent is None and say:
            print("dpo-launch train: overwrite_output_dir: true in the config: starting over, as with --overwrite",
                  flush=True)
        consent = consent or "overwrite"
    if consent == "overwrite":
        wanted = checkpoint_in_output_dir(values.get("resume_from_checkpoint"), output_dir, cwd)
        if wanted is not None:
            flag = "--overwrite" if values.get("overwrite_output_dir") is not True else "overwrite_output_dir: true"
            raise RunDirRefused(f"{flag} would delete {wanted}, which resume_from_checkpoint asks to resume from; "
                                "nothing was removed: drop resume_from_checkpoint to start over, or drop "
                                f"{flag} to resume")
    return consent


def output_dir_refusal(output_dir: Path, values: Mapping[str, Any], consent: str | None, cwd: Path) -> str | None:
    """Why `train` would refuse this output_dir as it stands (a previous run and no --resume/--overwrite, a
    contradiction), None when it would use it: `effective_consent` and `guard_output_dir`, printing nothing."""
    try:
        decided = effective_consent(output_dir, values, consent, cwd, say=False)
        if decided != "resume":  # resuming names its checkpoint as it goes; `plan` does not resume
            guard_output_dir(output_dir, values, decided)
    except RunDirRefused as exc:
        return str(exc)
    return None


def checkpoint_in_output_dir(value: Any, output_dir: Path, cwd: Path) -> Path | None:
    """The checkpoint `resume_from_checkpoint` names when it lies inside output_dir (None otherwise)."""
    if value is True:  # HF's "the last checkpoint in output_dir"
        return output_dir
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    path = Path(os.path.realpath(path if path.is_absolute() else cwd / path))
    root = Path(os.path.realpath(output_dir))
    return path if path == root or root in path.parents else None


def guard_output_dir(output_dir: Path, values: Mapping[str, Any], consent: str | None) -> dict[str, Any]:
    """Refuse to reuse a directory holding a previous run unless the user said how; the LF keys that say it.

    LLaMA-Factory resumes silently from a checkpoint-* it finds in output_dir (docs/upstream-notes.md#resume-trap), and
    `overwrite_output_dir` lets it write over final weights; dpo-launch asks first. `consent` is
    `effective_consent`'s.
    """
    found = checkpoints(output_dir)
    if consent == "resume":
        return {"resume_from_checkpoint": str(checkpoint_to_resume(output_dir))}
    if consent == "overwrite":
        return {"overwrite_output_dir": True}
    if values.get("resume_from_checkpoint"):
        return {}  # the config itself says what to do with a previous run
    previous = [p.name for p in found] + [p.name for p in weight_files(output_dir)]
    if previous:
        shown = ", ".join(previous[:3]) + (f" and {len(previous) - 3} more" if len(previous) > 3 else "")
        good = complete_checkpoints(output_dir)
        raise RunDirRefused(f"{output_dir} already holds a previous run ({shown}); pass --resume to continue "
                            f"from {good[-1].name if good else 'its last checkpoint'} or --overwrite to start "
                            f"over (or choose another output_dir)")
    return {}


def resumable(output_dir: Path | str) -> tuple[Path | None, list[tuple[str, str]]]:
    """(the last complete checkpoint or None, (name, why it cannot be resumed) of each newer checkpoint)."""
    good = complete_checkpoints(output_dir)
    last = checkpoint_step(good[-1]) or 0 if good else -1
    newer = [(p.name, checkpoint_problem(p) or "") for p in checkpoints(output_dir) if (checkpoint_step(p) or 0) > last]
    return (good[-1] if good else None), newer


def checkpoint_to_resume(output_dir: Path) -> Path:
    """The last complete checkpoint; newer ones that a fault cut short are named with the reason and passed over
    (HF's own choice, the newest by name, would fail to load them)."""
    good, skipped = resumable(output_dir)
    reasons = "; ".join(f"{name}: {why}" for name, why in skipped)
    if good is None and not skipped:
        raise RunDirRefused(f"--resume: no checkpoint-N directory in {output_dir} to resume from")
    if good is None:
        raise RunDirRefused(f"--resume: no complete checkpoint-N directory in {output_dir} to resume from "
                            f"({reasons}); pass --overwrite to start over")
    passed = f"; passing over {reasons}" if skipped else ""
    print(f"dpo-launch train: --resume: resuming from {good.name}, the last complete checkpoint{passed}", flush=True)
    return good


def record_run(resolved_args: Mapping[str, Any], datasets: Mapping[str, Any], plan: dict | None = None,
               history: str | None = None) -> None:
    """Write `<output_dir>/dpo-launch/` before anything trains: args file, YAML copy, versions, datasets, plan,
    and the run's history with this launch added (`history`, the whole new text of launches.jsonl).

    All or nothing: every file is written and synced to a temporary file first (launcher.atomic), and the
    temporary files replace the old ones only when all were written, so a full disk leaves the previous
    manifest (or none) as it was, never a mix of two runs' files.
    """
    files = run_files(resolved_args, datasets, plan)
    if history is not None:
        files[LAUNCHES_FILE] = history
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
        message = f"cannot write the run manifest {path}: {os_error(exc)}; nothing was started"
        raise RunDirRefused(message) from None


def os_error(exc: OSError) -> str:
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno and exc.strerror else str(exc)


def rewind_to_checkpoint(output_dir: Path, checkpoint: Path) -> None:
    """--resume: drop TensorBoard records and trainer_log/alerts lines logged after the checkpoint, so no step
    shows twice."""
    for line in rewind_for_resume(output_dir, checkpoint):
        print(f"dpo-launch train: --resume: {line}", file=sys.stderr if line.startswith("warning") else sys.stdout,
              flush=True)


def run_files(resolved_args: Mapping[str, Any], datasets: Mapping[str, Any],
              plan: dict | None = None) -> dict[str, str]:
    """The contents of the run directory, as `file name -> text`."""
    files = {
        RESOLVED_CONFIG: dump_json(dict(resolved_args)),
        "resolved_config.yaml": yaml.safe_dump(dict(resolved_args), sort_keys=False, allow_unicode=True),
        "versions.json": dump_json(package_versions()),
        "datasets.json": dump_json(dict(datasets)),
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
    try:  # the size too: a file removed or replaced after validate is recorded as such, not a traceback
        size, sha256 = path.stat().st_size, file_sha256(path)
    except OSError as exc:
        return {"path": str(path), "error": exc.strerror or str(exc)}
    return {"path": str(path), "bytes": size, "sha256": sha256}
