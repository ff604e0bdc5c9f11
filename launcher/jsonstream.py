"""Stream the records of a dataset file without loading it whole, keeping line numbers.

A `.json` file may hold a JSON array or JSON Lines, as Hugging Face `datasets` (which LLaMA-Factory uses)
accepts both; we sniff the first character. JSON Lines go through orjson when it is installed (the fast
path), arrays through `json.JSONDecoder.raw_decode` over a sliding text buffer. Parquet, CSV and Arrow
files go through pyarrow when it is importable, in record batches.

Every iterator yields `(index, line, value)`: `index` is the 0-based record index, `line` the 1-based line
where the record starts (None for columnar files), and `value` the record or a `SyntaxProblem`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CHUNK = 1 << 20
# A record larger than this is not a training example; stop growing the buffer and report.
MAX_RECORD_CHARS = 256 << 20


@dataclass(frozen=True)
class SyntaxProblem:
    """A record that cannot be parsed. After one in a JSON array, the array cannot be read further."""

    message: str
    line: int | None = None
    column: int | None = None
    fatal: bool = False


def json_loads():
    """orjson.loads when installed (several times faster), else json.loads."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


def sniff_json_kind(path: Path) -> str:
    """'array' when the first non-blank character is '[', else 'lines'."""
    with open(path, "rb") as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")
            if stripped:
                return "array" if stripped[:1] == b"[" else "lines"
    return "lines"


def iter_json_file(path: Path) -> Iterator[tuple[int, int | None, object]]:
    if sniff_json_kind(path) == "array":
        return iter_json_array(path)
    return iter_json_lines(path)


def iter_json_lines(path: Path) -> Iterator[tuple[int, int | None, object]]:
    loads = json_loads()
    index = 0
    with open(path, "rb") as handle:
        for line, raw in enumerate(handle, 1):
            try:
                value = loads(raw)
            except ValueError as exc:  # orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors
                if not raw.strip():
                    continue  # blank lines are skipped by the JSON Lines reader
                value = _line_problem(raw, line, exc)
            yield index, line, value
            index += 1


def _line_problem(raw: bytes, line: int, exc: ValueError) -> SyntaxProblem:
    try:
        json.loads(raw.rstrip(b"\r\n"))  # the stdlib's message and column are the clearer ones
    except UnicodeDecodeError as err:
        return SyntaxProblem(f"invalid UTF-8 (byte {err.start} of the line)", line, None)
    except json.JSONDecodeError as err:
        if line == 1 and err.msg == "Extra data":
            return SyntaxProblem("invalid JSON Lines: more than one value on the line", line, err.colno)
        return SyntaxProblem(f"invalid JSON: {err.msg}", line, err.colno)
    return SyntaxProblem(f"invalid JSON: {exc}", line, None)


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
        chunk = self.handle.read(max(CHUNK, len(self.buf) - self.pos))
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
        yield last + 1, None, SyntaxProblem(f"invalid UTF-8 after record {last} ({exc.reason})", fatal=True)


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
            yield index, reader.line, reader.problem(f"invalid JSON: expected ',' or ']' after record {index - 1} but found {found}")
            return
        reader.advance(reader.pos + 1)


def _decode_one(reader: _ArrayReader, decoder: json.JSONDecoder):
    """(value, end offset) of the value at pos, reading more while it may be cut by the buffer's end."""
    while True:
        try:
            return decoder.raw_decode(reader.buf, reader.pos)
        except json.JSONDecodeError as exc:
            start = reader.pos
            maybe_cut = exc.pos >= len(reader.buf) - 16 or exc.msg.startswith("Unterminated string")
            if maybe_cut and len(reader.buf) - start < MAX_RECORD_CHARS and reader.fill():
                continue
            return reader.problem(f"invalid JSON: {exc.msg}", exc.pos)


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
