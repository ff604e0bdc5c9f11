"""Convert preference data to LLaMA-Factory's ShareGPT ranking (or KTO) JSON Lines, streaming.

Pipeline: open the input as a record stream -> pick the format (`--from` or detection on the first record) ->
read each record into a `Pair` or a located skip -> write rows to a temporary file that replaces OUT only
when the run succeeds. Nothing here prints; `launcher.commands.convert` renders the result.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from launcher.atomic import JsonEditError, atomic_write, object_members, set_member, write_text_atomic
from launcher.convert_formats import READERS, detect
from launcher.convert_messages import Pair, Skip, to_kto, to_ranking, type_name
from launcher.diagnostics import ERROR, WARNING, Diagnostic

INPUT_TYPES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow"}
TARGETS = ("ranking", "kto")


class ConvertError(Exception):
    """The conversion cannot go on (unreadable input, nothing to convert, --strict); OUT is not written."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


@dataclass
class ConvertResult:
    total: int = 0
    converted: int = 0
    rows: int = 0
    skipped: list[Diagnostic] = field(default_factory=list)

    def skip_counts(self) -> Counter:
        return Counter(d.code for d in self.skipped)


def iter_records(source: Path) -> Iterator[tuple[int, int | None, object]]:
    """(index, line or None, record or SyntaxProblem) for a JSON, JSON Lines, parquet or arrow file."""
    from launcher.jsonstream import iter_columnar, iter_json_file

    kind = INPUT_TYPES.get(source.suffix.lower())
    if kind is None:
        raise ConvertError(Diagnostic(ERROR, "input-type", f"cannot read a '{source.suffix}' file; expected "
                                      f"one of {', '.join(INPUT_TYPES)}", file=str(source)))
    if kind == "json":
        # A repeated key keeps its last value, as any JSON reader does; the duplicate-key check is about what
        # pyarrow refuses in the files LLaMA-Factory loads, and the converted output has no repeated keys.
        return iter_json_file(source, check_keys=False)
    try:
        import pyarrow  # noqa: F401  (checked here for a clear message; jsonstream imports it lazily)
    except ImportError:
        raise ConvertError(Diagnostic(ERROR, "input-type", f"reading {kind} files needs pyarrow "
                                      "(pip install pyarrow)", file=str(source))) from None
    return iter_columnar(source, kind)


def detect_format(source: Path) -> tuple[str, str, int]:
    """(format, matching rule, record index) from the first record that is an object."""
    from launcher.jsonstream import SyntaxProblem

    for index, line, record in iter_records(source):
        if isinstance(record, SyntaxProblem):
            raise ConvertError(_syntax_diagnostic(source, record, index))
        if not isinstance(record, dict):
            continue
        found = detect(record)
        if found is None:
            keys = ", ".join(sorted(record)) or "no keys"
            raise ConvertError(Diagnostic(
                ERROR, "unknown-format", f"record {index} has {keys}, which matches none of the formats "
                f"{', '.join(READERS)}", file=str(source), line=line, record=index,
                hint="pass --from FORMAT; `dpo-launch convert --help` shows the shapes each format accepts"))
        return found[0], found[1], index
    raise ConvertError(Diagnostic(ERROR, "empty-input", "no records to convert", file=str(source)))


def convert(source: Path, out: Path, fmt: str, to: str = "ranking", strict: bool = False,
            result: ConvertResult | None = None) -> ConvertResult:
    """Read `source` as `fmt` and write `out` atomically; raises ConvertError (OUT untouched) on failure.

    Pass `result` to keep the counts and skipped records when a ConvertError is raised.
    """
    result = ConvertResult() if result is None else result
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as handle:
        for pair in _pairs(source, READERS[fmt], result, strict):
            for row in ([to_ranking(pair)] if to == "ranking" else to_kto(pair)):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                result.rows += 1
        _check_outcome(source, result, strict)
    return result


def _pairs(source: Path, reader, result: ConvertResult, strict: bool) -> Iterator[Pair]:
    from launcher.jsonstream import SyntaxProblem

    for index, line, record in iter_records(source):
        result.total += 1
        if isinstance(record, SyntaxProblem) and record.fatal:
            raise ConvertError(_syntax_diagnostic(source, record, index))
        try:
            pair = _read(record, reader)
        except Skip as skip:
            column = record.column if isinstance(record, SyntaxProblem) else None
            result.skipped.append(Diagnostic(ERROR if strict else WARNING, skip.code, f"record {index}: {skip.message}",
                                             file=str(source), line=line, column=column, record=index))
            continue
        result.converted += 1
        yield pair


def _read(record: object, reader) -> Pair:
    from launcher.jsonstream import SyntaxProblem

    if isinstance(record, SyntaxProblem):
        raise Skip("invalid-json", record.message)
    if not isinstance(record, dict):
        raise Skip("not-an-object", f"the record is {type_name(record)}, expected an object")
    return reader(record)


def _check_outcome(source: Path, result: ConvertResult, strict: bool) -> None:
    if strict and result.skipped:
        count = len(result.skipped)
        raise ConvertError(Diagnostic(ERROR, "strict", f"{count} of {result.total} records cannot be converted "
                                      "and --strict is set", file=str(source)))
    if result.converted == 0:
        message = "no records to convert" if result.total == 0 else f"none of the {result.total} records converted"
        raise ConvertError(Diagnostic(ERROR, "nothing-converted", message, file=str(source)))


def _syntax_diagnostic(source: Path, problem, index: int) -> Diagnostic:
    return Diagnostic(ERROR, "invalid-json", f"record {index}: {problem.message}", file=str(source),
                      line=problem.line, column=problem.column, record=index)


def dataset_entry(out: Path, info: Path, to: str) -> dict:
    """The dataset_info.json entry for OUT, with `file_name` relative to the dataset_info.json directory."""
    file_name = Path(_relpath(out.resolve(), info.resolve().parent)).as_posix()
    if to == "kto":
        return {"file_name": file_name, "formatting": "sharegpt", "ranking": False,
                "columns": {"messages": "conversations", "kto_tag": "label"}}
    return {"file_name": file_name, "formatting": "sharegpt", "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


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
    """Add or replace the entry in one atomic write that keeps the rest of the file as it was."""
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
