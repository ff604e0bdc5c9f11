"""Check a config's datasets: dataset_dir, dataset_info.json, each entry it names, and every record.

The entry point `check_datasets` returns all diagnostics plus a summary dict:
    {"dataset_dir": str | None, "records": int, "would_drop": int, "would_crash": int,
     "datasets": {name: {"source": "file"|"hf_hub"|..., "files": [path, ...], "checked": bool}},
     "files": {path: {"records", "dropped", "crash", "unparsable", "problems": {code: count}}}}
Record indexes in diagnostics are 0-based.
"""

from __future__ import annotations

from pathlib import Path

from launcher.check.config import LoadedConfig
from launcher.check.data.dataset_info import (
    DatasetInfo,
    check_schema,
    load_dataset_info,
)
from launcher.check.data.entry_rules import entry_rules, records_mode
from launcher.check.data.files import (
    MediaFinder,
    count_records,
    is_kind,
    resolve_files,
    summary_note,
)
from launcher.check.data.filewide import FileContext, file_wide
from launcher.check.data.records import RecordChecker
from launcher.check.data.scan import scan_file
from launcher.check.data.verdicts import Attr
from launcher.check.diagnostics import ERROR, NOTE, Diagnostic, suggestion_hint

DATASET_KEYS = ("dataset", "eval_dataset")
HUB_FIELDS = ("hf_hub_url", "ms_hub_url", "om_hub_url")
MODES = {"dpo": "pairwise", "rm": "pairwise", "kto": "kto"}


def dataset_names(loaded: LoadedConfig) -> list[tuple[str, int | None, str]]:
    """(config key, list index or None, name) for every dataset, split as LF's `split_arg` splits."""
    found: list[tuple[str, int | None, str]] = []
    for key in DATASET_KEYS:
        value = loaded.values.get(key)
        if isinstance(value, str):
            found += [(key, None, name.strip()) for name in value.split(",")]
        elif isinstance(value, list):
            found += [(key, i, str(name)) for i, name in enumerate(value)]
    return found


def _config_diag(loaded: LoadedConfig, severity: str, code: str, message: str, key: str, index: int | None,
                 hint: str | None = None) -> Diagnostic:
    if index is None:
        return loaded.diagnostic(severity, code, message, key, hint=hint)
    where = loaded.value_at(key, index)
    return Diagnostic(severity, code, message, file=where.file, line=where.line, column=where.column,
                      path=f"{key}[{index}]", hint=hint)


def check_datasets(loaded: LoadedConfig, cwd: Path, jobs: int = 1) -> tuple[list[Diagnostic], dict]:
    """Every dataset problem of the config, and the data summary (see the module docstring). `jobs`: processes a
    large JSON Lines file may be checked in (scan.py); the diagnostics are the same whatever it is."""
    names = dataset_names(loaded)
    dataset_dir = loaded.values.get("dataset_dir", "data")
    summary = {"dataset_dir": dataset_dir, "records": 0, "would_drop": 0, "would_crash": 0, "datasets": {},
               "files": {}}
    if not names or not isinstance(dataset_dir, str):
        return [], summary
    if dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:"):
        return _remote(loaded, names, dataset_dir, summary), summary
    info, found = _load_info(loaded, dataset_dir, cwd)
    if info is None:
        return found, summary
    found += check_schema(info, {name for _, _, name in names})
    stage = loaded.values.get("stage")
    mode = MODES.get(stage) if isinstance(stage, str) else None  # `stage: []` is the schema's error, not a crash
    seen: set[str] = set()
    for key, index, name in names:
        if name not in info.entries:
            found.append(_config_diag(loaded, ERROR, "dataset-undefined", f"{key}: dataset '{name}' is not defined "
                                      f"in {info.display} (LLaMA-Factory: 'Undefined dataset {name}')", key, index,
                                      suggestion_hint(name, info.entries)))
        elif name not in seen and isinstance(info.entries[name], dict):
            seen.add(name)
            found += _check_entry(info, name, dataset_dir, cwd, mode, summary, _media_dir(loaded, dataset_dir), jobs)
    return found, summary


def _remote(loaded: LoadedConfig, names: list, dataset_dir: str, summary: dict) -> list[Diagnostic]:
    where = ("names are Hub dataset ids" if dataset_dir == "ONLINE"
             else f"dataset_info.json is on the Hub ({dataset_dir[7:]})")
    for _, _, name in names:
        summary["datasets"][name] = {"source": "hub", "files": [], "checked": False}
    return [loaded.diagnostic(NOTE, "hub-not-checked", f"dataset_dir is {dataset_dir!r}: {where}; datasets are "
                              "not checked offline", "dataset_dir")]


def _load_info(loaded: LoadedConfig, dataset_dir: str, cwd: Path) -> tuple[DatasetInfo | None, list[Diagnostic]]:
    if not is_kind(cwd / dataset_dir, "is_dir"):
        key = "dataset_dir" if "dataset_dir" in loaded.values else "dataset"
        return None, [loaded.diagnostic(ERROR, "dataset-dir-missing", f"dataset_dir '{dataset_dir}' is not a folder; "
                                        "LLaMA-Factory resolves it from the directory you launch in", key,
                                        hint="launch from the folder that holds it, or use an absolute path")]
    display = str(Path(dataset_dir) / "dataset_info.json")
    return load_dataset_info(cwd / dataset_dir / "dataset_info.json", display)


def _media_dir(loaded: LoadedConfig, dataset_dir: str) -> str:
    """LF's DataArguments: media_dir defaults to dataset_dir (None only: an empty string means the launch folder)."""
    media_dir = loaded.values.get("media_dir")
    return media_dir if isinstance(media_dir, str) else dataset_dir


def _check_entry(info: DatasetInfo, name: str, dataset_dir: str, cwd: Path, mode: str | None,
                 summary: dict, media_dir: str, jobs: int = 1) -> list[Diagnostic]:
    entry = info.entries[name]
    source = next((f for f in HUB_FIELDS + ("script_url", "cloud_file_name") if f in entry), "file_name")
    checked_files: list[str] = []
    record = summary["datasets"][name] = {"source": source.removesuffix("_url").removesuffix("_name"),
                                          "files": checked_files, "checked": False}
    found = _entry_rules(info, name, entry, mode)
    if source != "file_name":
        return found + [info.diagnostic(NOTE, "hub-not-checked", f"entry '{name}' is loaded from {source} "
                                        f"{entry[source]!r}; its records are not checked offline", name)]
    if not isinstance(entry.get("file_name"), str):
        return found
    files, error, hint = resolve_files(dataset_dir, entry["file_name"], cwd)
    if error:
        return found + [info.diagnostic(ERROR, "dataset-file", f"entry '{name}': {error}", name, "file_name",
                                        hint=hint, key=False)]
    if mode is None or any(d.severity == ERROR and d.code in ("tags-incomplete", "column-unmapped") for d in found):
        return found  # the records cannot be read as LF would; the entry errors say why
    checker = RecordChecker(Attr.from_entry(entry), records_mode(entry, mode), MediaFinder(media_dir, cwd))
    file_found: list[Diagnostic] = []
    for data_file in files:
        entry_level, in_file = _scan(data_file, checker, summary, info, name, len(files) == 1, jobs)
        found += entry_level
        file_found += in_file
        checked_files.append(data_file.display)
    record["checked"] = True
    if not any(summary["files"][f.display]["records"] + summary["files"][f.display]["unparsable"] for f in files):
        found.append(info.diagnostic(ERROR, "dataset-empty", f"entry '{name}': {', '.join(checked_files)} holds "
                                     "no records; LLaMA-Factory cannot train on an empty dataset", name, "file_name",
                                     key=False))
    return found + file_found


def _scan(data_file, checker: RecordChecker, summary: dict, info: DatasetInfo, name: str,
          only_file: bool, jobs: int = 1) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(diagnostics located at the entry, the file's own): a problem most records share is reported once."""
    found, stats, tally = scan_file(data_file, checker, jobs)
    summary["files"][data_file.display] = stats.as_dict()
    summary["records"] += stats.records
    summary["would_drop"] += stats.dropped
    summary["would_crash"] += stats.crash
    where = FileContext(info, name, data_file.display, stats.records, only_file)
    grouped, covered = file_wide(tally, checker, where)
    kept = [d for position, d in enumerate(found) if position not in covered]
    at_entry = [d for d in grouped if d.file == info.display]
    in_file = [d for d in grouped if d.file != info.display]
    return at_entry, in_file + kept + [summary_note(data_file.display, stats)]


def _entry_rules(info: DatasetInfo, name: str, entry: dict, mode: str | None) -> list[Diagnostic]:
    return entry_rules(info, name, entry, mode)


def local_dataset_sizes(loaded: LoadedConfig, cwd: Path, data_summary: dict | None = None) -> dict[str, int | None]:
    """Records per dataset name as LF would load them (num_samples wins); None when not local or unknown.

    `data_summary` (from check_datasets) supplies the counts validate already took, so no file is read twice.
    """
    sizes: dict[str, int | None] = {}
    dataset_dir = loaded.values.get("dataset_dir", "data")
    info = None
    if isinstance(dataset_dir, str) and dataset_dir != "ONLINE" and not dataset_dir.startswith("REMOTE:"):
        info, _ = load_dataset_info(cwd / dataset_dir / "dataset_info.json", "dataset_info.json")
    for _, _, name in dataset_names(loaded):
        entry = info.entries.get(name) if info else None
        counted = _counted(data_summary, name)
        sizes[name] = _size(entry, dataset_dir, cwd, counted) if isinstance(entry, dict) else None
    return sizes


def _counted(data_summary: dict | None, name: str) -> list[int] | None:
    """The record counts check_datasets took for this dataset's files, when it read every one of them."""
    if data_summary is None:
        return None
    found = data_summary.get("datasets", {}).get(name, {})
    counts = [data_summary["files"].get(f, {}).get("records") for f in found.get("files", [])]
    if not found.get("checked") or not counts or None in counts:
        return None
    return [int(count) for count in counts]


def _size(entry: dict, dataset_dir: str, cwd: Path, counted: list[int] | None = None) -> int | None:
    if isinstance(entry.get("num_samples"), int):
        return entry["num_samples"]
    if any(f in entry for f in HUB_FIELDS + ("script_url", "cloud_file_name")) or not isinstance(
            entry.get("file_name"), str):
        return None
    if counted is not None:
        return sum(counted)
    files, error, _ = resolve_files(dataset_dir, entry["file_name"], cwd)
    if error:
        return None
    counts = [count_records(f) for f in files]
    return None if any(count is None for count in counts) else sum(count or 0 for count in counts)


__all__ = ["check_datasets", "local_dataset_sizes", "dataset_names"]
