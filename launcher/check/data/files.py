"""Resolve an entry's files as LLaMA-Factory does (`data/loader.py:73-141`) and read their records (scan.py
checks them through a RecordChecker, counting what LF would keep, drop or crash on)."""

from __future__ import annotations

import importlib.util
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from launcher.check.data.jsonstream import (
    SyntaxProblem,
    columnar_row_count,
    iter_columnar,
    iter_json_file,
)
from launcher.check.diagnostics import NOTE, Diagnostic, suggestion_hint

FILEEXT2TYPE = {"arrow": "arrow", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet", "txt": "text"}


@dataclass
class DataFile:
    path: Path  # absolute, for I/O
    display: str  # as the user wrote it, relative to the launch directory
    type: str


@dataclass
class FileStats:
    records: int = 0
    dropped: int = 0
    crash: int = 0
    unparsable: int = 0
    problems: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"records": self.records, "dropped": self.dropped, "crash": self.crash,
                "unparsable": self.unparsable, "problems": dict(sorted(self.problems.items()))}


def is_kind(path: Path, kind: str) -> bool:
    """path.is_dir() / is_file() / is_symlink(), False where the name itself is unusable (too long, NUL byte):
    pathlib raises OSError for ENAMETOOLONG, which user-supplied names reach."""
    try:
        return getattr(path, kind)()
    except (OSError, ValueError):
        return False


def special_file_kind(path: Path) -> str | None:
    """'a FIFO', 'a character device', ... for something that exists (links followed) but is neither a regular
    file nor a folder; None otherwise."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None


class MediaFinder:
    """Whether a media path from a record is a file where LF's converter looks for it (`_find_medias`):
    media_dir/path when that is a file, else the path as written, both from the launch folder."""

    CACHE_LIMIT = 100_000

    def __init__(self, media_dir: str, cwd: Path):
        self.media_dir, self.cwd = media_dir, cwd
        self._found: dict[str, bool] = {}

    def exists(self, item: str, kind: str) -> bool:
        """kind: images, videos or audios. Only videos may be URLs (av.open streams them; PIL and the audio
        loaders open local files), and those are not fetched here."""
        if kind == "videos" and "://" in item:
            return True
        found = self._found.get(item)
        if found is None:
            found = is_kind(self.cwd / self.media_dir / item, "is_file") or is_kind(self.cwd / item, "is_file")
            if len(self._found) < self.CACHE_LIMIT:
                self._found[item] = found
        return found


def resolve_files(dataset_dir: str, file_name: str, cwd: Path) -> tuple[list[DataFile], str | None, str | None]:
    """(files, error message, hint) for `os.path.join(dataset_dir, file_name)` from cwd."""
    try:
        return _resolve_files(dataset_dir, file_name, cwd)
    except (OSError, ValueError) as exc:
        display = os.path.join(dataset_dir, file_name)
        return [], f"cannot read {display}: {getattr(exc, 'strerror', None) or exc}", None


def _resolve_files(dataset_dir: str, file_name: str, cwd: Path) -> tuple[list[DataFile], str | None, str | None]:
    display = os.path.join(dataset_dir, file_name)
    local = cwd / display
    if is_kind(local, "is_dir"):
        names = sorted(os.listdir(local))
        if not names:
            return [], f"folder {display} is empty; LLaMA-Factory crashes with IndexError", None
        paths = [(local / name, os.path.join(display, name)) for name in names]
        special = next(((p, shown) for p, shown in paths if special_file_kind(p)), None)
        if special is not None:  # reading a FIFO would block, /dev/zero would never end
            return [], f"{special[1]} is {special_file_kind(special[0])}, not a regular file", None
    elif is_kind(local, "is_file"):
        paths = [(local, display)]
    elif special_file_kind(local):
        return [], (f"{display} is {special_file_kind(local)}, not a regular file (LLaMA-Factory: 'File {display} "
                    "not found.')"), "file_name must name a data file or a folder of them"
    elif is_kind(local, "is_symlink"):
        return [], f"{display} is a symbolic link that leads nowhere (a loop, or its target is missing)", None
    else:
        siblings = sorted(p.name for p in local.parent.iterdir()) if is_kind(local.parent, "is_dir") else []
        return [], f"file {display} not found (LLaMA-Factory: 'File {display} not found.')", suggestion_hint(
            Path(file_name).name, siblings) or "file_name is relative to dataset_dir"
    unloadable = [shown for p, shown in paths if Path(p).suffix[1:] not in FILEEXT2TYPE]
    if unloadable:
        return [], f"{unloadable[0]}: not a loadable file type; allowed: {', '.join(FILEEXT2TYPE)}", None
    types = {FILEEXT2TYPE[Path(p).suffix[1:]] for p, _ in paths}
    if len(types) > 1:
        return [], f"folder {display} mixes file types ({', '.join(sorted(types))}); LLaMA-Factory raises " \
                   "'File types should be identical.'", None
    file_type = types.pop()
    if file_type == "text":
        return [], f"{display}: a .txt file is pre-training text and has no preference columns", None
    return [DataFile(p, shown, file_type) for p, shown in paths], None, None


def iter_records(data_file: DataFile, check_keys: bool = True):
    if data_file.type == "json":
        return iter_json_file(data_file.path, check_keys)
    return iter_columnar(data_file.path, data_file.type)


def columnar_available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def summary_note(display: str, stats: FileStats) -> Diagnostic:
    parts = [f"{stats.records} record{'s' * (stats.records != 1)} checked",
             f"{stats.dropped} would be dropped by LLaMA-Factory"]
    if stats.crash:
        parts.append(f"{stats.crash} would crash it")
    if stats.unparsable:
        parts.append(f"{stats.unparsable} could not be parsed")
    return Diagnostic(NOTE, "data-summary", ", ".join(parts), file=display)


def count_records(data_file: DataFile) -> int | None:
    """Records in a file without the checks (for `plan`): JSON Lines by non-blank lines."""
    if data_file.type == "json":
        return sum(1 for _, _, rec in iter_json_file(data_file.path, check_keys=False)
                   if not isinstance(rec, SyntaxProblem))
    if not columnar_available():
        return None
    return columnar_row_count(data_file.path, data_file.type)
