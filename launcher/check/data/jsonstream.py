"""Stream the records of a dataset file without loading it whole, keeping line numbers.

A `.json` file may hold a JSON array or JSON Lines, as Hugging Face `datasets` (which LLaMA-Factory uses)
accepts both; we sniff the first character. JSON Lines go through orjson (the fast
path), arrays through `json.JSONDecoder.raw_decode` over a sliding text buffer. Parquet, CSV and Arrow
files go through pyarrow when it is importable, in record batches.

Every iterator yields `(index, line, value)`: `index` is the 0-based record index, `line` the 1-based line
where the record starts (None for columnar files), and `value` the record or a `SyntaxProblem`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from launcher.check.data.json_keys import first_repeated_key, may_repeat_a_key

CHUNK = 1 << 20
# The largest record we read: a JSON Lines line in bytes, a JSON array element in characters. Anything larger
# is not a training example; it is refused without being read whole (a 1 GB line costs 64 MiB, not 1 GB).
MAX_RECORD_BYTES = 64 << 20
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SyntaxProblem:
    """A record that cannot be parsed. After one in a JSON array, the array cannot be read further."""

    message: str
    line: int | None = None
    column: int | None = None
    fatal: bool = False
    code: str = "json-syntax"
    hint: str | None = None  # how to fix it, when the generic JSON-error hint does not say


def sniff_json_kind(path: Path) -> str:
    """'array' when the first non-blank character is '[', else 'lines'."""
    with open(path, "rb") as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")
            if stripped:
                return "array" if stripped[:1] == b"[" else "lines"
    return "lines"


def iter_json_file(path: Path, check_keys: bool = True) -> Iterator[tuple[int, int | None, object]]:
    if sniff_json_kind(path) == "array":
        return iter_json_array(path)  # datasets reads arrays with json.load: a repeated key's last value wins
    return iter_json_lines(path, check_keys)


def iter_json_lines(path: Path, check_keys: bool = True) -> Iterator[tuple[int, int | None, object]]:
    """check_keys=False skips the duplicate-key check (for readers of data that validate has already passed)."""
    for index, line, raw, value in JsonLines(path):
        if check_keys and type(value) is not SyntaxProblem and may_repeat_a_key(raw, value):
            value = duplicate_key_problem(raw, line) or value
        yield index, line, value


class JsonLines:
    """The non-blank lines of a JSON Lines file (or of a span of it), iterated as (index, line, the line's bytes,
    the record or a SyntaxProblem), without the duplicate-key check: the caller makes it (scan.scan_span).

    `span`: (start, end) byte offsets at line starts (scan.line_spans): only those lines are read, and `index`
    and `line` count from the span's start (0 and 1 for its first line) as if it were a file of its own; the
    BOM is looked for at offset 0 only. After the iteration, `lines` is the number of lines read, blank ones
    included, so the lines of the next span can be numbered on from it, and `records` the record indexes used.

    `fast_keys`: a record checker's fast path (records.RecordChecker.fast_keys). A record it calls clean, on a
    line with no more ':' than the keys it counted, is skipped (its index is used, nothing is yielded): such a
    line provably writes no key twice (json_keys.may_repeat_a_key), and nearly every line of a file is one. The
    test is made here rather than by the caller because handing each record out of this loop cost as much as
    the test itself (bench/validate_speed.py)."""

    def __init__(self, path: Path, span: tuple[int, int] | None = None, fast_keys=None):
        self.path, self.span, self.fast_keys = path, span, fast_keys
        self.lines = self.records = 0

    def __iter__(self) -> Iterator[tuple[int, int, bytes, object]]:
        loads, limit, fast_keys = orjson.loads, MAX_RECORD_BYTES, self.fast_keys
        step = min(CHUNK, limit + 1)
        start, end = self.span if self.span is not None else (0, -1)
        left = end - start if self.span is not None else -1  # bytes of the span to read; -1 never counts to 0
        index = line = 0
        try:
            # A 1 MiB buffer: with the default 8 KiB one, a line of a few KB often straddles two buffer fills,
            # and reading cost half as much as parsing (bench/validate_speed.py).
            with open(self.path, "rb", buffering=CHUNK) as handle:
                if start:
                    handle.seek(start)
                elif handle.read(len(BOM)) == BOM:  # pyarrow, LF's reader, accepts a BOM
                    left -= len(BOM)
                else:
                    handle.seek(0)
                readline = handle.readline  # a bound method and a while loop: this runs once per record
                while left:
                    raw = readline(step)
                    if not raw:
                        return
                    line += 1
                    size = len(raw)
                    left -= size
                    if size == step and raw[-1] != 10:  # 10 is b"\n"
                        whole = _long_line(handle, raw, limit, step)
                        if whole is None:  # stop: finding the end of this line could mean reading gigabytes
                            yield index, line, raw, SyntaxProblem(
                                f"record larger than {_size(limit)} (the most dpo-launch reads); a line this long "
                                "is not one training example", line, fatal=True)
                            index += 1
                            return
                        left -= len(whole) - size
                        raw = whole
                    try:
                        value = loads(raw)
                    except ValueError as exc:  # orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors
                        if not raw.strip():
                            continue  # blank lines are skipped by the JSON Lines reader
                        value = _parse_slowly(raw, line, exc, first_line=line == 1 and start == 0)
                    else:
                        if fast_keys is not None and type(value) is dict:
                            keys = fast_keys(value)
                            if keys and raw.count(b":") <= keys:
                                index += 1
                                continue
                    yield index, line, raw, value
                    index += 1
        finally:
            self.lines, self.records = line, index


def duplicate_key_problem(raw: bytes, line: int | None) -> SyntaxProblem | None:
    key = first_repeated_key(raw)
    if key is None:
        return None
    return SyntaxProblem(f"key '{key}' appears twice in one object; pyarrow, LLaMA-Factory's JSON Lines reader, "
                         "refuses the whole file (\"Column(...) was specified twice\")", line, None,
                         code="duplicate-key", hint=f"keep one '{key}' in that object")


def _long_line(handle, start: bytes, limit: int, step: int) -> bytes | None:
    """The rest of a line longer than `step`, read a step at a time (one big readline is 3x slower and copies
    twice), or None once it passes `limit` bytes."""
    parts, size = [start], len(start)
    while size <= limit and not parts[-1].endswith(b"\n"):
        chunk = handle.readline(step)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts) if size <= limit else None


def _parse_slowly(raw: bytes, line: int, exc: ValueError, first_line: bool) -> object:
    """The record by the stdlib parser, which accepts NaN and Infinity as pyarrow does (orjson does not),
    or the problem, in the stdlib's clearer words."""
    try:
        return json.loads(raw.rstrip(b"\r\n"))
    except UnicodeDecodeError as err:
        return SyntaxProblem(f"invalid UTF-8 (byte {err.start} of the line)", line, None)
    except json.JSONDecodeError as err:
        if first_line and err.msg == "Extra data":
            return SyntaxProblem("invalid JSON Lines: more than one value on the line", line, err.colno)
        return SyntaxProblem(f"invalid JSON: {_reason(err)}", line, err.colno)
    except RecursionError:
        return SyntaxProblem("invalid JSON: nested too deeply (more than about 1,000 levels)", line, None)


def _size(limit: int) -> str:
    return f"{limit / (1 << 20):g} MiB" if limit >= 1 << 20 else f"{limit:,} bytes"


def _reason(error: json.JSONDecodeError) -> str:
    if error.msg == "Invalid control character at":  # the stdlib appends the position we report separately
        return "a control character (a byte below 0x20, e.g. a raw tab or NUL) inside a string; escape it"
    return error.msg


class _ArrayReader:
    """A sliding text buffer over a JSON array, with the line and column of the buffer's start."""

    def __init__(self, handle):
        self.handle = handle
        self.buf = ""
        self.pos = 0
        self.line = 1  # line of buf[pos]
        self.base_col = 0  # 0-based column of buf[0]
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        pending = len(self.buf) - self.pos  # doubles while a record is cut, but stops just past the limit
        chunk = self.handle.read(max(CHUNK, min(pending, MAX_RECORD_BYTES + 1 - pending)))
        if not chunk:
            self.eof = True
            return False
        if self.pos > CHUNK:
            self._trim()
        self.buf += chunk
        return True

    def _trim(self) -> None:
        newline = self.buf.rfind("\n", 0, self.pos)
        self.base_col = self.pos - newline - 1 if newline >= 0 else self.base_col + self.pos
        self.buf = self.buf[self.pos:]
        self.pos = 0

    def advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def skip_blank(self) -> str:
        """The next non-blank character ('' at end of file), with pos on it."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            self.advance(pos)
            if pos < len(buf):
                return buf[pos]
            if not self.fill():
                return ""

    def where(self, offset: int) -> tuple[int, int]:
        line = self.line + self.buf.count("\n", self.pos, offset)
        newline = self.buf.rfind("\n", 0, offset)
        column = offset - newline if newline >= 0 else self.base_col + offset + 1
        return line, column

    def problem(self, message: str, offset: int | None = None) -> SyntaxProblem:
        line, column = self.where(self.pos if offset is None else offset)
        return SyntaxProblem(message, line, column, fatal=True)


def iter_json_array(path: Path) -> Iterator[tuple[int, int | None, object]]:
    decoder = json.JSONDecoder()
    last = -1
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for item in _array_items(_ArrayReader(handle), decoder):
                last = item[0]
                yield item
    except UnicodeDecodeError as exc:
        where = f"after record {last}" if last >= 0 else "before the first record ends"
        yield last + 1, None, SyntaxProblem(f"invalid UTF-8 {where} ({exc.reason})", fatal=True)


def _array_items(reader: _ArrayReader, decoder: json.JSONDecoder) -> Iterator[tuple[int, int | None, object]]:
    reader.skip_blank()
    reader.advance(reader.pos + 1)  # the '[' sniffed before
    index = 0
    if reader.skip_blank() == "]":
        reader.advance(reader.pos + 1)
        yield from _trailing(reader, index)
        return
    while True:
        if reader.skip_blank() == "":
            yield index, reader.line, reader.problem("invalid JSON: the array is not closed (missing ']')")
            return
        item = _decode_one(reader, decoder)
        if isinstance(item, SyntaxProblem):
            yield index, item.line, item
            return
        yield index, reader.line, item[0]
        reader.advance(item[1])
        index += 1
        separator = reader.skip_blank()
        if separator == "]":
            reader.advance(reader.pos + 1)
            yield from _trailing(reader, index)
            return
        if separator != ",":
            found = f"'{separator}'" if separator else "the end of the file"
            yield index, reader.line, reader.problem(
                f"invalid JSON: expected ',' or ']' after record {index - 1} but found {found}")
            return
        reader.advance(reader.pos + 1)


def _decode_one(reader: _ArrayReader, decoder: json.JSONDecoder):
    """(value, end offset) of the value at pos, reading more while it may be cut by the buffer's end."""
    while True:
        try:
            return decoder.raw_decode(reader.buf, reader.pos)
        except RecursionError:
            return reader.problem("invalid JSON: nested too deeply (more than about 1,000 levels)")
        except json.JSONDecodeError as exc:
            maybe_cut = exc.pos >= len(reader.buf) - 16 or exc.msg.startswith("Unterminated string")
            if not maybe_cut:
                return reader.problem(f"invalid JSON: {_reason(exc)}", exc.pos)
            if len(reader.buf) - reader.pos > MAX_RECORD_BYTES:
                return reader.problem(f"record larger than {_size(MAX_RECORD_BYTES)} (the most dpo-launch reads); "
                                      "a record this long is not one training example")
            if not reader.fill():
                return reader.problem(f"invalid JSON: {_reason(exc)}", exc.pos)


def _trailing(reader: _ArrayReader, index: int) -> Iterator[tuple[int, int | None, object]]:
    extra = reader.skip_blank()
    if extra:
        yield index, reader.line, reader.problem("invalid JSON: extra data after the closing ']'")


def iter_columnar(path: Path, file_type: str) -> Iterator[tuple[int, int | None, object]]:
    """Rows of a parquet, csv or arrow file as dicts, batch by batch (pyarrow is imported here only)."""
    index = 0
    for batch in _batches(path, file_type):
        for row in batch.to_pylist():
            yield index, None, row
            index += 1


def _batches(path: Path, file_type: str):
    import pyarrow as pa

    if file_type == "parquet":
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(batch_size=4096)
    elif file_type == "csv":
        import pyarrow.csv as pacsv

        yield from pacsv.open_csv(path)
    else:
        with pa.memory_map(str(path)) as source:
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowInvalid:
                reader = pa.ipc.open_file(source)
                yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
                return
            yield from reader


def columnar_row_count(path: Path, file_type: str) -> int | None:
    """Rows in a columnar file, from metadata where the format has it."""
    if file_type == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return sum(batch.num_rows for batch in _batches(path, file_type))
