"""Convert preference data to LLaMA-Factory's ShareGPT ranking (or KTO) JSON Lines, streaming.

Pipeline: open the input as a record stream -> rename mapped columns (`--map`, options.py) -> pick the format
(`--from` or detection on the first record) -> read each record into a `Pair` or a located skip -> drop the
pairs the weighted preference does not prefer (`--weights`) -> write rows to a temporary file that replaces OUT
only when the run succeeds. Nothing here prints; `launcher.commands.convert` renders the result.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from launcher.atomic import atomic_write
from launcher.check.data.jsonstream import SyntaxProblem, iter_columnar, iter_json_file
from launcher.check.diagnostics import (
    ERROR,
    WARNING,
    Diagnostic,
    expected_one_of,
    suggestion_hint,
)
from launcher.convert.formats import ALIASES, FORMATS, READERS, detect
from launcher.convert.messages import Pair, Unconvertible, to_kto, to_ranking, type_name
from launcher.convert.options import ReadOptions, first_record_problem, preference, renamed

INPUT_TYPES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow"}


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
    dropped: Counter = field(default_factory=Counter)  # pairs the --weights preference drops, by reason

    def skip_counts(self) -> Counter:
        return Counter(d.code for d in self.skipped)


def format_named(fmt: str | None) -> str | None:
    """The format `--from` names (aliases and any case accepted); ValueError with the choices otherwise."""
    if fmt is None or fmt in FORMATS:
        return fmt
    if fmt.lower() in ALIASES:
        return ALIASES[fmt.lower()]
    hint = suggestion_hint(fmt, FORMATS + tuple(ALIASES))
    message = f"--from: expected one of {expected_one_of(FORMATS)} but got '{fmt}'"
    raise ValueError(f"{message} ({hint})" if hint else message)


def check_paths(source: Path, target: Path, force: bool) -> None:
    """The input must be a file, OUT a new file (or --force); ConvertError before anything is written."""
    def fail(code: str, message: str, where: Path, hint: str | None = None) -> None:
        raise ConvertError(Diagnostic(ERROR, code, message, file=str(where), hint=hint))

    if not source.is_file():
        fail("not-found", "no such file" if not source.exists() else "not a file", source)
    if target.exists() and source.resolve() == target.resolve():
        fail("same-file", "OUT is the input file; write the converted data to a new file", target)
    if target.exists() and not force:
        fail("exists", "the file exists and would be overwritten", target, "pass --force to overwrite it")


def iter_records(source: Path) -> Iterator[tuple[int, int | None, object]]:
    """(index, line or None, record or SyntaxProblem) for a JSON, JSON Lines, parquet or arrow file."""
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


def first_record(source: Path) -> tuple[int, int | None, dict]:
    """(index, line, record) of the first record that is an object; ConvertError when there is none."""
    for index, line, record in iter_records(source):
        if isinstance(record, SyntaxProblem):
            raise ConvertError(_syntax_diagnostic(source, record, index))
        if isinstance(record, dict):
            return index, line, record
    raise ConvertError(Diagnostic(ERROR, "empty-input", "no records to convert", file=str(source)))


def check_options(source: Path, options: ReadOptions) -> None:
    """ConvertError when --map or --weights names what the first record does not have."""
    if options.columns or options.weights:
        index, line, record = first_record(source)
        problem = first_record_problem(record, options)
        if problem:
            raise ConvertError(Diagnostic(ERROR, "option-mismatch", f"record {index}: {problem}", file=str(source),
                                          line=line, record=index))


def detect_format(source: Path, options: ReadOptions | None = None) -> tuple[str, str, int]:
    """(format, matching rule, record index) from the first record that is an object (after --map).

    Detection fails when no rule matches, or when the format a rule picks cannot read the record but another
    can: the error then names the formats that read it."""
    index, line, record = first_record(source)
    record = renamed(record, options.columns if options else {})
    found, readable = detect(record), readable_formats(record)
    if found is not None and (found[0] in readable or not readable):
        return found[0], found[1], index
    if found is None:
        keys = ", ".join(sorted(record)) or "no keys"
        message = f"record {index} has {keys}, which matches none of the formats {', '.join(READERS)}"
    else:
        message = f"record {index} looks like '{found[0]}' ({found[1]}), but that reader cannot read it " \
                  f"({_why_not(READERS[found[0]], record)})"
    if readable:
        message += f"; it can be read with {' or '.join(f'--from {fmt}' for fmt in readable)}"
    raise ConvertError(Diagnostic(ERROR, "unknown-format", message, file=str(source), line=line, record=index,
                                  hint="pass --from FORMAT, or --map FIELD=COLUMN,... for other column names; "
                                       "`dpo-launch convert --help` shows the shapes each format accepts"))


def readable_formats(record: dict) -> list[str]:
    """The formats whose reader turns this record into a pair."""
    return [fmt for fmt, reader in READERS.items() if _why_not(reader, record) is None]


def _why_not(reader, record: dict) -> str | None:
    try:
        reader(record)
    except Unconvertible as skip:
        return skip.message
    return None


def convert(source: Path, out: Path, fmt: str, to: str = "ranking", strict: bool = False,
            result: ConvertResult | None = None, options: ReadOptions | None = None) -> ConvertResult:
    """Read `source` as `fmt` and write `out` atomically; raises ConvertError (OUT untouched) on failure.

    Pass `result` to keep the counts and skipped records when a ConvertError is raised.
    """
    result = ConvertResult() if result is None else result
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as handle:
        for pair in _pairs(source, READERS[fmt], result, strict, options or ReadOptions()):
            for row in ([to_ranking(pair)] if to == "ranking" else to_kto(pair)):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                result.rows += 1
        _check_outcome(source, result, strict)
    return result


def _pairs(source: Path, reader, result: ConvertResult, strict: bool, options: ReadOptions) -> Iterator[Pair]:
    for index, line, record in iter_records(source):
        result.total += 1
        if isinstance(record, SyntaxProblem) and record.fatal:
            raise ConvertError(_syntax_diagnostic(source, record, index))
        try:
            record = renamed(record, options.columns) if isinstance(record, dict) else record
            pair = _read(record, reader)
            dropped = preference(record, options) if isinstance(record, dict) else None
        except Unconvertible as skip:
            column = record.column if isinstance(record, SyntaxProblem) else None
            result.skipped.append(Diagnostic(ERROR if strict else WARNING, skip.code, f"record {index}: {skip.message}",
                                             file=str(source), line=line, column=column, record=index))
            continue
        if dropped:
            result.dropped[dropped] += 1
            continue
        result.converted += 1
        yield pair


def _read(record: object, reader) -> Pair:
    if isinstance(record, SyntaxProblem):
        raise Unconvertible("invalid-json", record.message)
    if not isinstance(record, dict):
        raise Unconvertible("not-an-object", f"the record is {type_name(record)}, expected an object")
    return reader(record)


def _check_outcome(source: Path, result: ConvertResult, strict: bool) -> None:
    if strict and result.skipped:
        count = len(result.skipped)
        raise ConvertError(Diagnostic(ERROR, "strict", f"{count} of {result.total} records cannot be converted "
                                      "and --strict is set", file=str(source)))
    if result.converted == 0:
        message = "no records to convert" if result.total == 0 else f"none of the {result.total} records converted"
        if result.dropped:
            message += f" ({_dropped_text(result.dropped)})"
        raise ConvertError(Diagnostic(ERROR, "nothing-converted", message, file=str(source)))


def _syntax_diagnostic(source: Path, problem, index: int) -> Diagnostic:
    return Diagnostic(ERROR, "invalid-json", f"record {index}: {problem.message}", file=str(source),
                      line=problem.line, column=problem.column, record=index)


def summary(result: ConvertResult, to: str, target: Path) -> str:
    """'converted 998 of 1000 records; 2 skipped: 1 empty chosen, 1 no user turn' and 'wrote OUT (998 pairs)'."""
    text = f"converted {result.converted} of {result.total} records"
    counts = result.skip_counts()
    if counts:
        kinds = ", ".join(f"{n} {code.replace('-', ' ')}" for code, n in
                          sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        text += f"; {sum(counts.values())} skipped: {kinds}"
    if result.dropped:
        text += f"; {_dropped_text(result.dropped)}"
    rows = f"{result.rows} KTO rows, {result.converted} desirable and {result.converted} undesirable" \
        if to == "kto" else f"{result.rows} pair{'s' * (result.rows != 1)}"
    return f"{text}\nwrote {target} ({rows})"


def _dropped_text(dropped: Counter) -> str:
    """'3 dropped by --weights: 2 flipped, 1 tied'."""
    kinds = ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items(), key=lambda item: (-item[1], item[0])))
    return f"{sum(dropped.values())} dropped by --weights: {kinds}"
