"""Event files written byte by byte, without torch or tensorboard: a TFRecord per Event holding scalars, as
TensorBoard's writers lay them out (launcher/observe/event_writing.py writes them), which is what
HF's TensorBoardCallback writes through torch's SummaryWriter for a scalar. tests/observe/test_events.py checks the
reader against TensorBoard's own on files torch wrote; these only feed the readers."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from launcher.observe.event_writing import file_version_event, scalar_event
from launcher.observe.event_writing import frame as record


def write_scalars(path: Path, points: Iterable[tuple[str, int, float]], start_time: float = 1000.0,
                  mode: str = "wb") -> Path:
    """(tag, step, value) points as one event file; wall times 0.5 s apart per step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as handle:
        for tag, step, value in points:
            handle.write(record(scalar_event(tag, step, value, start_time + step / 2)))
    return path


def write_run(run_dir: Path, steps: int, max_steps: int | None = None, finished: bool = False,
              first_step: int = 1) -> Path:
    """`<run_dir>/tensorboard/events.out.tfevents.1.host` with train/loss and rewards for steps first..steps,
    progress/max_steps in `dpo-launch/` and, when `finished`, HF's train/train_runtime at the last step."""
    points = [(tag, step, value) for step in range(first_step, steps + 1)
              for tag, value in (("train/loss", 0.7 - step / 1000), ("train/rewards/margins", step / 100))]
    if finished:
        points.append(("train/train_runtime", steps, 1.5))
    write_scalars(run_dir / "tensorboard" / "events.out.tfevents.1.host", points)
    if max_steps is not None:
        write_scalars(run_dir / "tensorboard" / "dpo-launch" / "events.out.tfevents.1.host",
                      [("progress/max_steps", 0, float(max_steps))])
    return run_dir

class EventWriter:
    """Appends scalars to one `events.out.tfevents.*` file in `logdir`, written at once (SummaryWriter's
    add_scalar/flush interface, for tests that grow a file while a reader follows it)."""

    def __init__(self, logdir: Path | str, name: str = "test"):
        self.path = Path(logdir) / f"events.out.tfevents.{int(time.time())}.{name}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(record(file_version_event(time.time())))

    def add_scalar(self, tag: str, value: float, step: int, walltime: float | None = None) -> None:
        wall_time = time.time() if walltime is None else walltime
        with open(self.path, "ab") as handle:
            handle.write(record(scalar_event(tag, step, value, wall_time)))

    def flush(self) -> None:
        """Every add is written at once."""
