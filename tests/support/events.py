"""Write TensorBoard event files without torch, for tests of the readers that only need real files.

The records are framed as TensorBoard frames them (length, masked CRC32C of the length, data, masked CRC32C of
the data) and hold `Event{wall_time, step, summary{value{tag, simple_value}}}`, which is what HF's
TensorBoardCallback writes through torch's SummaryWriter for a scalar. tests/observe/test_events.py checks
launcher.observe.events against TensorBoard's own reader on files torch wrote; these only feed the readers.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from launcher.observe.events import masked_crc32c


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    summary_value = _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value))
    return (_field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
            + _field(5, 2, _field(1, 2, summary_value)))


def frame(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


class EventWriter:
    """Appends scalars to one `events.out.tfevents.*` file in `logdir`, flushed after every add."""

    def __init__(self, logdir: Path | str, name: str = "test"):
        self.path = Path(logdir) / f"events.out.tfevents.{int(time.time())}.{name}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        version = _field(1, 1, struct.pack("<d", time.time())) + _field(3, 2, b"brain.Event:2")
        self.path.write_bytes(frame(version))

    def add_scalar(self, tag: str, value: float, step: int, walltime: float | None = None) -> None:
        wall_time = time.time() if walltime is None else walltime
        with open(self.path, "ab") as handle:
            handle.write(frame(scalar_event(tag, value, step, wall_time)))

    def flush(self) -> None:
        """Every add is written at once; here for the SummaryWriter interface the tests share."""
