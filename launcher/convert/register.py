"""`convert --register`: add the converted file to a dataset_info.json in one atomic write that keeps the
rest of the file (other entries, their order, formatting) as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

from launcher.atomic import write_text_atomic
from launcher.check.diagnostics import ERROR, Diagnostic
from launcher.convert.converter import ConvertError
from launcher.convert.json_edit import JsonEditError, object_members, set_member


def dataset_entry(out: Path, info: Path, to: str) -> dict:
    """The dataset_info.json entry for OUT, with `file_name` relative to the folder dataset_info.json is read from.

    LLaMA-Factory reads `<dataset_dir>/dataset_info.json` and opens `os.path.join(dataset_dir, file_name)`
    (data/parser.py `get_dataset_list`, data/loader.py `_load_single_dataset`), so when dataset_info.json is a
    symbolic link, file_name is relative to the link's folder, not to its target's.
    """
    file_name = Path(os.path.relpath(out.resolve(), info.absolute().parent.resolve())).as_posix()
    if to == "kto":
        return {"file_name": file_name, "formatting": "sharegpt", "ranking": False,
                "columns": {"messages": "conversations", "kto_tag": "label"}}
    return {"file_name": file_name, "formatting": "sharegpt", "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}


def plan_registration(info: Path, name: str, entry: dict, force: bool) -> str:
    """What registering would do: 'create', 'add', 'replace' or 'unchanged'; ConvertError on a conflict.

    Run before converting, so that a name clash stops the command before OUT is written.
    """
    if not info.exists():
        return "create"
    members, _ = _members(info)
    existing = [m for m in members if m.key == name]
    if not existing:
        return "add"
    if existing[-1].value == entry:
        return "unchanged"
    if not force:
        line = _read_text(info).count("\n", 0, existing[-1].value_start) + 1
        raise ConvertError(Diagnostic(
            ERROR, "entry-exists", f"'{name}' is already defined ({_describe(existing[-1].value)})",
            file=str(info), line=line, hint="pass --force to replace it, or choose another --name"))
    return "replace"


def register(info: Path, name: str, entry: dict, force: bool) -> str:
    """Add or replace the entry in one atomic write that keeps the rest of the file as it was; through a symbolic
    link, the link's target is edited and the link stays (launcher.atomic)."""
    action = plan_registration(info, name, entry, force)
    if action == "create":
        info.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(info, json.dumps({name: entry}, indent=2, ensure_ascii=False) + "\n")
    elif action != "unchanged":
        write_text_atomic(info, set_member(_read_text(info), name, entry))
    return action


def _members(info: Path):
    try:
        return object_members(_read_text(info))
    except JsonEditError as exc:
        raise ConvertError(Diagnostic(ERROR, "dataset-info", f"cannot add an entry: {exc.message}",
                                      file=str(info), line=exc.line, column=exc.column)) from None


def _read_text(info: Path) -> str:
    try:
        with open(info, encoding="utf-8", newline="") as handle:  # newline="": keep \r\n as it is
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(Diagnostic(ERROR, "dataset-info", f"cannot read the file: {exc}", file=str(info))) from None


def _describe(value: object) -> str:
    if isinstance(value, dict) and "file_name" in value:
        return f"file_name '{value['file_name']}'"
    return "with other settings"
