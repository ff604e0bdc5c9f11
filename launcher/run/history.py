"""A run's history, `<output_dir>/dpo-launch/launches.jsonl`, and what `--resume` may change.

Every launch of a run appends a `start` line (its resolved config, dataset fingerprints, versions, topology,
time, pid, host) and, when it ends, an `end` line (exit code and state): the file is only ever added to, so
after resumes the run directory still says which launch trained which steps with which config and data.
`resolved_config.json` and `datasets.json` describe the current (last) launch.

`--resume` continues an optimizer and a data order that belong to the run's config and data. So it is
refused when the config or the data differ from the last launch's, with the differences listed, unless the
user says `--allow-changes`. Settings that only say how long to train and how often to log, evaluate and save
may change freely (extending a run is what resuming is for); they are listed too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from launcher.check.schema_words import shown
from launcher.layout import RESOLVED_CONFIG, launches_file, run_dir
from launcher.run.rundir import RunDirRefused
from launcher.versions import package_versions

# Keys a resumed run may change without --allow-changes: run length and bookkeeping, not what a step computes.
FREE_TO_CHANGE = ("max_steps", "num_train_epochs", "save_steps", "save_strategy", "save_total_limit",
                  "save_only_model", "logging_steps", "eval_steps", "eval_strategy", "plot_loss", "report_to",
                  "dataloader_num_workers", "preprocessing_num_workers")
# Keys that say how this launch treats the previous one, or where the run is (a run directory may be moved):
# they differ between launches by design.
LAUNCH_KEYS = ("resume_from_checkpoint", "overwrite_output_dir", "output_dir")


def read_launches(output_dir) -> list[dict]:
    """Every line of launches.jsonl that parses (a line cut short by a kill is skipped)."""
    try:
        lines = launches_file(output_dir).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def last_launch(output_dir) -> dict | None:
    """The last launch's config and data: its `start` line, or (a run older than launches.jsonl) the manifest."""
    starts = [entry for entry in read_launches(output_dir) if entry.get("event") == "start"]
    if starts:
        return starts[-1]
    try:
        config = json.loads((run_dir(output_dir) / RESOLVED_CONFIG).read_text(encoding="utf-8"))
        datasets = json.loads((run_dir(output_dir) / "datasets.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {"launch": 0, "resolved_config": config, "datasets": datasets}


def start_entry(output_dir, resolved: Mapping[str, Any], datasets: Mapping[str, Any], launch: Mapping[str, Any]
                ) -> tuple[int, str]:
    """(this launch's number, the new text of launches.jsonl with its `start` line added)."""
    entries = read_launches(output_dir)
    number = max((entry.get("launch", 0) for entry in entries if isinstance(entry.get("launch"), int)), default=0) + 1
    entry = {"launch": number, "event": "start", **_now(), **launch, "resolved_config": dict(resolved),
             "datasets": dict(datasets), "versions": package_versions()}
    try:
        old = launches_file(output_dir).read_text(encoding="utf-8")
    except OSError:
        old = ""
    if old and not old.endswith("\n"):
        old = old[:old.rfind("\n") + 1]  # a line cut short by a kill
    return number, old + json.dumps(entry, ensure_ascii=False) + "\n"


def record_end(output_dir, number: int, exit_code: int, state: str) -> None:
    """Append this launch's `end` line (an unwritable file loses the line, never the run's exit code)."""
    entry = {"launch": number, "event": "end", **_now(), "exit_code": exit_code, "state": state}
    try:
        with open(launches_file(output_dir), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
    except OSError:
        pass


def _now() -> dict[str, Any]:
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "unix_time": time.time()}


def check_resume(output_dir, resolved: Mapping[str, Any], datasets: Mapping[str, Any], allow_changes: bool) -> None:
    """Refuse a resume whose config or data differ from the last launch's (unless `allow_changes`); print the
    changes that go ahead."""
    previous = last_launch(output_dir)
    if previous is None:
        return
    free, changed = config_changes(previous.get("resolved_config") or {}, resolved)
    changed += data_changes(previous.get("datasets") or {}, datasets)
    for line in free:
        print(f"dpo-launch train: --resume: changed since the last launch: {line}", flush=True)
    if changed and allow_changes:
        for line in changed:
            print(f"dpo-launch train: --resume: changed since the last launch (--allow-changes): {line}", flush=True)
    elif changed:
        when = f" ({previous['time']})" if previous.get("time") else ""
        listed = "".join(f"\n  {line}" for line in changed)
        raise RunDirRefused(f"--resume: the config or the data changed since the run's last launch{when}:{listed}\n"
                            f"resuming would continue its optimizer and data order with them; undo the changes, "
                            f"pass --allow-changes to resume anyway (every launch is recorded in "
                            f"{launches_file(output_dir)}), or start a new run in another output_dir")


def config_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(changes of keys free to change, other changes), each as 'key: old -> new', in key order."""
    free: list[str] = []
    other: list[str] = []
    for key in sorted(set(before) | set(after)):
        if key in LAUNCH_KEYS or before.get(key) == after.get(key):
            continue
        line = f"{key}: {_value(before, key)} -> {_value(after, key)}"
        (free if key in FREE_TO_CHANGE else other).append(line)
    return free, other


def _value(values: Mapping[str, Any], key: str) -> str:
    if key not in values:
        return "(not set)"
    value = values[key]
    return json.dumps(value) if isinstance(value, (list, dict)) else shown(value)


def data_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """One line per dataset whose files' contents differ (sha256 and size: a moved workspace is no change), or
    that came or went."""
    old, new = before.get("datasets") or {}, after.get("datasets") or {}
    return [f"dataset {name}: {_files(old.get(name))} -> {_files(new.get(name))}"
            for name in sorted(set(old) | set(new)) if _contents(old.get(name)) != _contents(new.get(name))]


def _contents(found: Mapping[str, Any] | None) -> Any:
    if found is None or "remote" in found:
        return found
    return [(item.get("sha256"), item.get("bytes"), item.get("error")) for item in found.get("files", [])]


def _files(found: Mapping[str, Any] | None) -> str:
    if found is None:
        return "(not used)"
    if "remote" in found:
        return f"{found['remote']} (not fingerprinted)"
    return ", ".join(_file(item) for item in found.get("files", [])) or "(no files)"


def _file(item: Mapping[str, Any]) -> str:
    if "sha256" not in item:
        return f"{item.get('path')} ({item.get('error', 'unreadable')})"
    return f"{item['path']} (sha256 {item['sha256'][:12]}, {item['bytes']} bytes)"
