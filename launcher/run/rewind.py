"""Rewind a run's TensorBoard event files to a checkpoint's step before `train --resume` continues from it.

A resumed run logs again every step after the checkpoint. When the first run had logged steps past its
last checkpoint (a kill -9, a crash, a failed save, a `save_steps` that does not divide the stop step),
those steps would be in the event files twice, and TensorBoard draws both: a curve that jumps back.
So `--resume` drops, from the existing event files, every record whose step is beyond the checkpoint's,
keeping the others byte for byte (framing and checksums included). A file is rewritten atomically
(launcher.atomic) and only when it loses a record; an unfinished record at the end of a file (the writer
was killed mid-write) is dropped too. The resumed run's writers add new files next to these.

The two JSON Lines logs that the resumed run appends to are rewound the same way: LLaMA-Factory's
`trainer_log.jsonl` (by `current_steps`; LF only clears it with overwrite_output_dir, and its `plot_loss`
draws from it) and our `dpo-launch/alerts.jsonl` (by `step`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from launcher.atomic import atomic_write
from launcher.layout import (
    ALERTS_FILE,
    OWN_DIR,
    TRAINER_LOG,
    checkpoint_step,
    tensorboard_dir,
)
from launcher.observe.events import CorruptEventFile, event_files, fields, masked_crc32c

_HEADER, _FOOTER = 12, 4


@dataclass(frozen=True)
class Rewound:
    path: Path
    dropped: int  # records past the step, plus an unfinished one at the end
    kept: int


def record_spans(buffer: bytes) -> list[tuple[int, int]]:
    """(start, end) of each complete record; the header checksum is checked (cheap), the data's is not."""
    spans, pos = [], 0
    while len(buffer) - pos >= _HEADER:
        header = buffer[pos:pos + 8]
        if struct.unpack("<I", buffer[pos + 8:pos + 12])[0] != masked_crc32c(header):
            raise CorruptEventFile(f"bad length checksum at byte {pos}")
        end = pos + _HEADER + struct.unpack("<Q", header)[0] + _FOOTER
        if end > len(buffer):
            break
        spans.append((pos, end))
        pos = end
    return spans


def event_step(record: bytes) -> int:
    """The Event's `step` (field 2); 0 when absent (file_version records)."""
    for number, _, value in fields(record[_HEADER:-_FOOTER]):
        if number == 2:
            return value - (1 << 64) if value >= 1 << 63 else value
    return 0


def rewind_file(path: Path, step: int) -> Rewound:
    buffer = path.read_bytes()
    spans = record_spans(buffer)
    kept = [buffer[start:end] for start, end in spans if event_step(buffer[start:end]) <= step]
    dropped = len(spans) - len(kept) + (1 if (spans[-1][1] if spans else 0) < len(buffer) else 0)
    if dropped:
        with atomic_write(path, "wb", encoding=None) as handle:
            handle.write(b"".join(kept))
    return Rewound(path, dropped, len(kept))


def rewind_event_files(logdir: Path, step: int) -> list[Rewound]:
    """Drop every event past `step` under `logdir`; the files that changed, each with what it lost."""
    if not Path(logdir).is_dir():
        return []
    changed = [rewind_file(path, step) for path in event_files(Path(logdir))]
    return [item for item in changed if item.dropped]


# JSON Lines logs under output_dir that a resumed run appends to, and the field holding each line's step.
STEP_LOGS = ((TRAINER_LOG, "current_steps"), (f"{OWN_DIR}/{ALERTS_FILE}", "step"))


def rewind_json_lines(path: Path, step: int, step_key: str) -> Rewound:
    """Drop the lines whose `step_key` is past `step`, and an unfinished last line (no newline: the writer was
    killed mid-write). A line that is not a JSON object with a whole-number step is kept as it is."""
    lines = path.read_bytes().splitlines(keepends=True)
    kept = []
    for number, line in enumerate(lines):
        if number == len(lines) - 1 and not line.endswith(b"\n"):
            continue
        try:
            value = json.loads(line).get(step_key)
        except (ValueError, AttributeError):
            value = None
        if not isinstance(value, int) or value <= step:
            kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        with atomic_write(path, "wb", encoding=None) as handle:
            handle.write(b"".join(kept))
    return Rewound(path, dropped, len(kept))


def rewind_for_resume(output_dir: Path, checkpoint: Path) -> list[str]:
    """Rewind `<output_dir>/tensorboard` and the step logs to the checkpoint's step; one line per file changed
    (or a warning: a damaged or unwritable file is left as it is, and resuming goes on)."""
    step = checkpoint_step(checkpoint)
    if step is None:
        return []
    try:
        changed = rewind_event_files(tensorboard_dir(output_dir), step)
    except (OSError, CorruptEventFile) as exc:
        said = [f"warning: TensorBoard files left as they are ({exc}); steps after {step} may show twice"]
    else:
        said = [f"dropped {item.dropped} TensorBoard record(s) after step {step} from {item.path}" for item in changed]
    for name, step_key in STEP_LOGS:
        path = Path(output_dir) / name
        if not path.is_file():
            continue
        try:
            rewound = rewind_json_lines(path, step, step_key)
        except OSError as exc:
            said.append(f"warning: {path} left as it is ({exc.strerror or exc}); steps after {step} may show twice")
            continue
        if rewound.dropped:
            said.append(f"dropped {rewound.dropped} line(s) after step {step} from {path}")
    return said
