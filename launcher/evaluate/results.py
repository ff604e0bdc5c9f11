"""Where an evaluation's results go: `<output_dir>/dpo-launch/eval/summary.json` (atomic; `report` reads it)
and TensorBoard scalars in `<output_dir>/tensorboard/dpo-launch-eval/` at the run's last step.

The event file is written without torch or tensorboard (launcher.observe.event_writing).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from launcher.atomic import write_text_atomic
from launcher.layout import eval_dir, tensorboard_dir
from launcher.observe.event_writing import file_version_event, frame, scalar_event

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
    records = [frame(file_version_event(now))]
    records += [frame(scalar_event(tag, step, float(metrics[name]), now)) for name, tag in TAGS.items()
                if isinstance(metrics.get(name), (int, float))]
    write_text = b"".join(records)
    with open(path, "wb") as handle:  # a new file per evaluation; readers skip a half-written last record
        handle.write(write_text)
    return folder
