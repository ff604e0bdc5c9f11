"""TensorBoard event records written without torch or tensorboard: TFRecord frames (length, masked CRC32C, data,
masked CRC32C) holding `Event{wall_time, step, summary{value{tag, simple_value}}}`, the records torch's
SummaryWriter writes for a scalar (field numbers from tensorboard/compat/proto/event.proto and summary.proto).
launcher.observe.events reads them back; `dpo-launch eval` writes its scalars with these, and the tests use them to
feed the readers."""

from __future__ import annotations

import struct

from launcher.observe.events import masked_crc32c


def frame(data: bytes) -> bytes:
    """One TFRecord: the data's length and its CRC, the data and its CRC."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def file_version_event(wall_time: float) -> bytes:
    """The Event every event file starts with (`file_version: "brain.Event:2"`)."""
    return _field(1, 1, struct.pack("<d", wall_time)) + _field(3, 2, b"brain.Event:2")


def scalar_event(tag: str, step: int, value: float, wall_time: float) -> bytes:
    """An Event holding one scalar summary value."""
    summary_value = _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value))
    return (_field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
            + _field(5, 2, _field(1, 2, summary_value)))


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


__all__ = ["file_version_event", "frame", "scalar_event"]
