"""`validate --stats`: measure the training data with the config's tokenizer and template, in a worker process.

The CLI side: it decides where the statistics go (<output_dir>/dpo-launch/stats, or --stats-dir), writes the
request, starts `python -m launcher.stats.worker` (no shell) and renders what comes back. It imports nothing
heavy; the worker imports transformers and llamafactory. Statistics never make a valid config invalid: only a
tokenizer, template or argument that cannot be loaded (an error diagnostic, exit 1) does.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from launcher import PACKAGE_ROOT
from launcher.atomic import write_text_atomic
from launcher.check.data.datasets import dataset_names
from launcher.check.diagnostics import ERROR, NOTE, Diagnostic
from launcher.check.validation import ValidationResult
from launcher.errors import UsageError

STATS_SUBDIR = Path("dpo-launch") / "stats"


class StatsWorkerCrashed(RuntimeError):
    """The worker failed in a way that is our bug; the CLI turns it into exit 3 with a crash log."""


def stats_directory(result: ValidationResult, cwd: Path, stats_dir: str | None) -> Path:
    """--stats-dir, else <output_dir>/dpo-launch/stats, relative paths from the launch directory as in LF."""
    if stats_dir:
        return cwd / stats_dir
    output_dir = result.config.values.get("output_dir") if result.config else None
    if not isinstance(output_dir, str) or not output_dir:
        raise UsageError("--stats writes to <output_dir>/dpo-launch/stats but the config has no output_dir; "
                         "pass --stats-dir DIR")
    return cwd / output_dir / STATS_SUBDIR


def measurable_datasets(result: ValidationResult) -> dict[str, list[str]]:
    """The datasets of `dataset` and `eval_dataset` whose local records validate has read, each with what the
    run uses it for ("train", "eval" or both), training ones first."""
    checked = result.data_summary.get("datasets", {})
    uses: dict[str, list[str]] = {}
    for key, _, name in dataset_names(result.config) if result.config else []:
        use = "train" if key == "dataset" else "eval"
        if checked.get(name, {}).get("checked") and use not in uses.get(name, []):
            uses.setdefault(name, []).append(use)
    return uses


class WarmWorker:
    """The stats worker, started before validation so its imports overlap with it; it waits on stdin."""
    def __init__(self, cwd: Path):
        # Imported here: `validate` imports this module, and subprocess cost it about 3 ms of start-up.
        import subprocess
        import tempfile

        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(worker_argv("-"), cwd=cwd, env=worker_env(), stdin=subprocess.PIPE,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def run(self, request: dict) -> tuple[int, bytes]:
        """Send the request, wait, and return the exit code and the worker's output."""
        self.process.communicate(json.dumps(request, ensure_ascii=False, default=str).encode("utf-8"))
        self.log.seek(0)
        return self.process.returncode, self.log.read()

    def cancel(self) -> None:
        """Nothing to measure: stop the worker now rather than wait for its imports to finish."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()
        self.log.close()


def run_stats(result: ValidationResult, cwd: Path, stats_dir: str | None = None, processes: int | None = None,
              warm: WarmWorker | None = None) -> tuple[list[Diagnostic], dict | None]:
    """(diagnostics to add, the statistics or None). Errors in the config or data skip the statistics."""
    warm = warm or WarmWorker(cwd)
    skipped = _skip_reason(result)
    if skipped:
        warm.cancel()
        return [_note(result, skipped)], None
    try:
        directory = stats_directory(result, cwd, stats_dir)
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warm.cancel()
        return [Diagnostic(ERROR, "stats-dir", f"cannot create the stats directory {directory}: "
                           f"{exc.strerror or exc}", hint="pass a writable folder with --stats-dir")], None
    except UsageError:
        warm.cancel()
        raise
    request = {"config": result.config.values, "datasets": measurable_datasets(result), "stats_dir": str(directory),
               "result_file": str(directory / "stats.json"), "processes": processes}
    return _run_worker(warm, request, directory, result)


def _skip_reason(result: ValidationResult) -> str | None:
    if not result.ok:
        return ("stats skipped: fix the errors above first (the statistics need a config and data that "
                "LLaMA-Factory can load)")
    if not measurable_datasets(result):
        return "stats skipped: no local dataset to measure (hub datasets are not downloaded)"
    return None


def worker_argv(request_file: Path | str) -> list[str]:
    return [sys.executable, "-m", "launcher.stats.worker", "--args-file", str(request_file)]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(PACKAGE_ROOT), env.get("PYTHONPATH"))))
    return env


def _run_worker(warm: WarmWorker, request: dict, directory: Path, result: ValidationResult):
    request_file, result_file = directory / "request.json", Path(request["result_file"])
    write_text_atomic(request_file, json.dumps(request, indent=2, ensure_ascii=False, default=str) + "\n")
    result_file.unlink(missing_ok=True)  # never read a previous run's numbers
    code, output = warm.run(request)
    log = directory / "worker.log"
    log.write_bytes(output)
    if code == 130 or code == -2:
        raise KeyboardInterrupt
    payload = _read_result(result_file) if code in (0, 1) else None
    if payload is None:
        tail = output.decode("utf-8", errors="replace")[-4000:]
        raise StatsWorkerCrashed(f"the stats worker exited with {code}; log {log}:\n{tail}")
    if not payload.get("ok"):
        return [_error_diagnostic(payload["error"], result)], None
    payload["stats_dir"] = str(directory)
    return [], payload


def _read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _error_diagnostic(error: dict, result: ValidationResult) -> Diagnostic:
    key = error.get("key")
    if key and result.config is not None and key in result.config.values:
        return result.config.diagnostic(ERROR, error["code"], error["message"], key, hint=error.get("hint"))
    return Diagnostic(ERROR, error["code"], error["message"], file=result.config.file if result.config else None,
                      hint=error.get("hint"))


def _note(result: ValidationResult, message: str) -> Diagnostic:
    return Diagnostic(NOTE, "stats-skipped", message, file=result.config.file if result.config else None)


__all__ = ["StatsWorkerCrashed", "WarmWorker", "run_stats", "stats_directory", "worker_argv"]
