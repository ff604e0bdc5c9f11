"""An incremental reader of TensorBoard event files, without tensorboard, tensorflow or torch.

An event file is a sequence of TFRecords: `uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`, little-endian, where `data` is a serialized `tensorflow.Event` protobuf.
We decode only the fields scalars and text need (field numbers from tensorboard's event.proto,
summary.proto and tensor.proto):

    Event:   1 wall_time (double), 2 step (int64), 5 summary (Summary)
    Summary: 1 value (repeated Value)
    Value:   1 tag (string), 2 simple_value (float), 8 tensor (TensorProto), 9 metadata (SummaryMetadata)
    TensorProto: 1 dtype, 4 tensor_content (bytes), 5 float_val, 6 double_val, 8 string_val
    SummaryMetadata: 1 plugin_data (PluginData: 1 plugin_name)

`EventReader.poll()` returns only what was appended since the last poll; a record still being written
(fewer bytes on disk than its header announces) is left for the next poll. Damaged data (a flipped byte, a
file cut and appended to) is skipped, never fatal: a record whose data checksum fails is dropped (its length is
known), after a length checksum that fails reading resumes at the next offset where a whole record checks out.
The reader says so once per file (`EventReader.take_warnings`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DT_FLOAT, DT_DOUBLE, DT_STRING = 1, 2, 7
_HEADER = 12  # uint64 length + uint32 crc
_FOOTER = 4


@dataclass(frozen=True)
class Scalar:
    run: str        # event file's directory relative to the logdir ("." for the logdir itself)
    tag: str
    step: int
    wall_time: float
    value: float


@dataclass(frozen=True)
class Text:
    run: str
    tag: str
    step: int
    wall_time: float
    text: str


class CorruptEventFile(Exception):
    """A record whose checksum does not match: the file is damaged, not merely still being written."""


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def split_records(buffer: bytes, verify_data: bool = True) -> tuple[list[bytes], int]:
    """Complete records in `buffer` and the number of bytes they span (the rest is an unfinished record)."""
    records, pos = [], 0
    while len(buffer) - pos >= _HEADER:
        header = buffer[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", buffer[pos + 8:pos + 12])[0] != masked_crc32c(header):
            raise CorruptEventFile(f"bad length checksum at byte {pos}")
        end = pos + _HEADER + length + _FOOTER
        if end > len(buffer):
            break
        data = buffer[pos + _HEADER:pos + _HEADER + length]
        if verify_data and struct.unpack("<I", buffer[end - 4:end])[0] != masked_crc32c(data):
            raise CorruptEventFile(f"bad data checksum in the record at byte {pos}")
        records.append(data)
        pos = end
    return records, pos


def _header_ok(buffer: bytes, pos: int) -> bool:
    return struct.unpack("<I", buffer[pos + 8:pos + 12])[0] == masked_crc32c(buffer[pos:pos + 8])


def _data_ok(buffer: bytes, pos: int, end: int) -> bool:
    return struct.unpack("<I", buffer[end - 4:end])[0] == masked_crc32c(buffer[pos + _HEADER:end - _FOOTER])


def _next_record_start(buffer: bytes, pos: int, verify_data: bool) -> int | None:
    """The first offset from `pos` where a record's header checks out and, when all of it is there, its data too."""
    for start in range(pos, len(buffer) - _HEADER + 1):
        if buffer[start + 4:start + 8] != b"\0\0\0\0" or not _header_ok(buffer, start):  # records are < 4 GiB
            continue
        end = start + _HEADER + struct.unpack("<Q", buffer[start:start + 8])[0] + _FOOTER
        if end > len(buffer) or not verify_data or _data_ok(buffer, start, end):
            return start
    return None


def salvage_records(buffer: bytes, verify_data: bool = True, base: int = 0) -> tuple[list[bytes], int, list[str]]:
    """Like `split_records`, but damage is skipped instead of raised: (records, bytes they span, what was skipped,
    at file offsets counted from `base`, where `buffer` starts).

    A bad data checksum drops that record; a bad length checksum skips to the next offset where a whole record
    checks out, or, when none does yet, stops there (the next poll looks again once more bytes are written).
    """
    records, problems, pos = [], [], 0
    while len(buffer) - pos >= _HEADER:
        if not _header_ok(buffer, pos):
            start = _next_record_start(buffer, pos + 1, verify_data)
            skipped = f"; skipped {start - pos} bytes" if start is not None else ""
            problems.append(f"bad length checksum at byte {base + pos}{skipped}")
            if start is None:
                break
            pos = start
            continue
        end = pos + _HEADER + struct.unpack("<Q", buffer[pos:pos + 8])[0] + _FOOTER
        if end > len(buffer):
            break
        if verify_data and not _data_ok(buffer, pos, end):
            problems.append(f"bad data checksum in the record at byte {base + pos}; skipped it")
        else:
            records.append(buffer[pos + _HEADER:end - _FOOTER])
        pos = end
    return records, pos, problems


# --- protobuf wire format: just enough of it ---------------------------------------------------------

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes):
    """Yield (field_number, wire_type, value) for a serialized message; value is int, bytes or raw 4/8 bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:  # groups (3, 4) are not used by event.proto
            raise CorruptEventFile(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _tensor_value(data: bytes) -> float | str | None:
    dtype: Any = 0
    content: Any = b""
    floats: list[float] = []
    doubles: list[float] = []
    strings: list[bytes] = []
    for number, wire, value in fields(data):
        if number == 1:
            dtype = value
        elif number == 4:
            content = value
        elif number == 5:
            floats += struct.unpack(f"<{len(value) // 4}f", value) if wire == 2 else struct.unpack("<f", value)
        elif number == 6:
            doubles += struct.unpack(f"<{len(value) // 8}d", value) if wire == 2 else struct.unpack("<d", value)
        elif number == 8:
            strings.append(value)
    if dtype == DT_STRING and strings:
        return strings[0].decode("utf-8", "replace")
    if dtype == DT_FLOAT:
        return floats[0] if floats else (struct.unpack("<f", content[:4])[0] if len(content) >= 4 else None)
    if dtype == DT_DOUBLE:
        return doubles[0] if doubles else (struct.unpack("<d", content[:8])[0] if len(content) >= 8 else None)
    return None


def _summary_value(data: bytes) -> tuple[str, float | str | None]:
    tag, result = "", None
    for number, _, value in fields(data):
        if number == 1:
            tag = value.decode("utf-8", "replace")
        elif number == 2:
            result = struct.unpack("<f", value)[0]
        elif number == 8:
            result = _tensor_value(value)
    return tag, result


def parse_event(data: bytes, run: str = ".") -> list[Scalar | Text]:
    """Scalars and texts in one serialized Event (empty for file_version, graphs, histograms, ...)."""
    wall_time, step, values = 0.0, 0, []
    for number, _, value in fields(data):
        if number == 1:
            (wall_time,) = struct.unpack("<d", value)
        elif number == 2:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5:
            values += [_summary_value(v) for n, _, v in fields(value) if n == 1]
    out: list[Scalar | Text] = []
    for tag, value in values:
        if isinstance(value, str):
            out.append(Text(run, tag, step, wall_time, value))
        elif value is not None:
            out.append(Scalar(run, tag, step, wall_time, float(value)))
    return out


# --- incremental reading -----------------------------------------------------------------------------

def event_files(logdir: Path) -> list[Path]:
    """Every event file under `logdir` (TensorBoard treats each directory as one run)."""
    return sorted(p for p in Path(logdir).rglob("*") if "tfevents" in p.name and p.is_file())


class EventReader:
    """Reads new events under a log directory on each `poll()`, remembering how far each file was read; damaged
    data is skipped, and named once per file by `take_warnings()`."""

    def __init__(self, logdir: Path | str, verify_data: bool = True):
        self.logdir = Path(logdir)
        self.verify_data = verify_data
        self._offsets: dict[Path, int] = {}
        self._damaged: set[Path] = set()
        self._warnings: list[str] = []

    def take_warnings(self) -> list[str]:
        """One line per event file found damaged since the last call (each file is named once)."""
        warnings, self._warnings = self._warnings, []
        return warnings

    def poll(self) -> list[Scalar | Text]:
        """Events appended since the last poll, file by file (files in name order, records in file order)."""
        out: list[Scalar | Text] = []
        for path in event_files(self.logdir):
            out += self._read_new(path)
        return out

    def _read_new(self, path: Path) -> list[Scalar | Text]:
        offset = self._offsets.get(path, 0)
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                buffer = handle.read()
        except FileNotFoundError:  # removed between listing and reading
            return []
        records, used, problems = salvage_records(buffer, self.verify_data, base=offset)
        self._offsets[path] = offset + used
        run = path.parent.relative_to(self.logdir).as_posix()
        events: list[Scalar | Text] = []
        for record in records:
            try:
                events += parse_event(record, run)
            except (CorruptEventFile, IndexError, struct.error) as exc:  # its checksum matched, yet not an Event
                problems.append(f"a record that is not an event ({exc}); skipped it")
        if problems:
            self._damaged_file(path, problems[0])
        return events

    def _damaged_file(self, path: Path, problem: str) -> None:
        if path not in self._damaged:
            self._damaged.add(path)
            self._warnings.append(f"{path}: damaged event file ({problem}); what can be read is shown, the rest "
                                  "is skipped")


def read_all(logdir: Path | str) -> list[Scalar | Text]:
    """Every scalar and text event under `logdir`, read once."""
    return EventReader(logdir).poll()
