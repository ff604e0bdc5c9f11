"""Where an evaluation's results go: `<output_dir>/dpo-launch/eval/summary.json` (atomic; `report` reads it)
and TensorBoard scalars in `<output_dir>/tensorboard/dpo-launch-eval/` at the run's last step.

The event file is written without torch or tensorboard: TFRecord frames (length, masked CRC32C, data, masked
CRC32C) holding `Event{wall_time, step, summary{value{tag, simple_value}}}`, the records torch's SummaryWriter
writes for a scalar; launcher.observe.events reads them back.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

from launcher.atomic import write_text_atomic
from launcher.layout import eval_dir, tensorboard_dir
from launcher.observe.events import masked_crc32c

SUMMARY_FILE = "summary.json"
TENSORBOARD_RUN = "dpo-launch-eval"
# summary["metrics"] name -> TensorBoard tag
TAGS = {"accuracy": "eval/heldout_accuracy", "margin": "eval/heldout_margin", "loss": "eval/heldout_loss",
        "chosen_logps": "eval/heldout_logps_chosen", "rejected_logps": "eval/heldout_logps_rejected",
        "win_rate_point": "eval/win_rate", "win_rate": "eval/win_rate_lower95",
        "win_rate_high": "eval/win_rate_upper95", "length_policy": "eval/length_policy",
        "length_baseline": "eval/length_baseline"}


def write_summary(output_dir: Path, summary: dict) -> Path:
    path = eval_dir(output_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return path


def read_summary(output_dir: Path) -> dict | None:
    try:
        value = json.loads((eval_dir(output_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_scalars(output_dir: Path, metrics: dict, step: int) -> Path:
    """One new event file with the metrics TAGS names (those that were computed)."""
    folder = tensorboard_dir(output_dir) / TENSORBOARD_RUN
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    path = folder / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.dpo-launch-eval"
    records = [_frame(_field(1, 1, struct.pack("<d", now)) + _field(3, 2, b"brain.Event:2"))]
    records += [_frame(_scalar(tag, float(metrics[name]), step, now)) for name, tag in TAGS.items()
                if isinstance(metrics.get(name), (int, float))]
    write_text = b"".join(records)
    with open(path, "wb") as handle:  # a new file per evaluation; readers skip a half-written last record
        handle.write(write_text)
    return folder


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


def _scalar(tag: str, value: float, step: int, wall_time: float) -> bytes:
    summary_value = _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value))
    return (_field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
            + _field(5, 2, _field(1, 2, summary_value)))


def _frame(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
