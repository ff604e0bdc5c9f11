"""Follow a run directory's event files: the state behind `dpo-launch monitor` and `dpo-launch report`.

Everything comes from the run directory alone (event files, `dpo-launch/*.json`, `alerts.jsonl`), so it
works on a machine that only has a copy of it. Rendering lives in `launcher/observe/monitor.py`. What cannot be
read (a damaged event file, a line of alerts.jsonl that is not an alert) is skipped and named once
(`take_warnings`); how the run ended is `end` (launcher.observe.run_end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from launcher.errors import UserError
from launcher.layout import OWN_DIR
from launcher.observe.alerts import AlertEngine
from launcher.observe.events import EventReader, Scalar, Text
from launcher.observe.run_end import RunEnd, alert_record, judge_end
from launcher.run_status import read_status

FINISHED_TAG = "train/train_runtime"  # HF logs it once, after the last step
MAX_STEPS_TAG = "progress/max_steps"  # written by launcher/worker/metrics.py at train begin


class RunDirError(UserError):
    """The run directory cannot be read; the message says what and how to fix it."""


def find_logdir(run_dir: Path | str) -> Path:
    """`<run_dir>/tensorboard` (dpo-launch train), else HF's fallback `<run_dir>/runs`, else RUN_DIR itself if it
    holds event files (it is a logdir)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such directory (expected a run directory: the config's output_dir)")
    for candidate in (run_dir / "tensorboard", run_dir / "runs"):
        if candidate.is_dir():
            return candidate
    # RUN_DIR may be the logdir itself; an unrelated parent (e.g. /tmp) holding many runs' event files in its
    # subfolders is not a run, and reading them all would mix their steps.
    if any(run_dir.glob("events.out.tfevents.*")):
        return run_dir
    raise RunDirError(f"{run_dir}: no TensorBoard directory (looked for {run_dir / 'tensorboard'} and event "
                      f"files under {run_dir}); `dpo-launch train` writes them to <output_dir>/tensorboard once the "
                      f"first step is logged; check that RUN_DIR is the config's output_dir and report_to "
                      f"includes tensorboard")


def read_json(path: Path) -> dict | None:
    """A small JSON file of the run directory, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Update:
    """What one poll added."""

    train_steps: list[int] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)


class RunState:
    """The run as read so far: every scalar series, texts, alerts, progress."""

    def __init__(self, run_dir: Path | str, logdir: Path | None = None):
        self.run_dir = Path(run_dir)
        self.logdir = logdir or find_logdir(self.run_dir)
        self.series: dict[str, list[tuple[int, float, float]]] = {}  # tag -> [(step, value, wall_time)]
        # tag -> {step: the value logged last at it}: value_at is asked for each new step of every poll, and a
        # scan of the whole series per lookup made watching a long run from its start quadratic.
        self._at_step: dict[str, dict[int, float]] = {}
        self.texts: dict[str, str] = {}
        self.alerts: list[dict] = []
        self._reader = EventReader(self.logdir)
        self._alerts_offset = 0
        self._alert_lines = 0  # lines of alerts.jsonl read so far
        self._warnings: list[str] = []
        self._bad_alert_line_seen = False
        self.end: RunEnd | None = None
        self.launch_started_at: float | None = None  # this launch's start (status.json), None without one
        self._engine = AlertEngine()
        self._pending: dict[int, dict[str, float]] = {}  # step -> metrics not yet fed to the engine
        own = self.run_dir / OWN_DIR
        self.resolved_config = read_json(own / "resolved_config.json") or {}
        self.plan = read_json(own / "plan.json") or {}
        self.runtime = read_json(own / "runtime.json") or {}

    # -- reading -------------------------------------------------------------------------------------

    def poll(self, final: bool = False) -> Update:
        """Read what was appended; `final` judges the last step's alerts too (the run has ended)."""
        update = Update()
        for event in self._reader.poll():
            if isinstance(event, Text):
                self.texts[event.tag] = event.text
            else:
                self._add_scalar(event, update)
        self.runtime = self.runtime or read_json(self.run_dir / OWN_DIR / "runtime.json") or {}
        update.alerts = self._new_alerts(final)
        self.alerts += update.alerts
        status = read_status(self.run_dir)  # once per poll: how the run ended and when this launch started
        self.end = judge_end(status, step=self.step, max_steps=self.max_steps, loop_ended=self.finished,
                             alerts=self.alerts)
        started = status.started_at if status else None
        self.launch_started_at = float(started) if isinstance(started, (int, float)) else None
        return update

    def take_warnings(self) -> list[str]:
        """What could not be read since the last call, one line per damaged file (each named once)."""
        warnings = self._reader.take_warnings() + self._warnings
        self._warnings = []
        return warnings

    def _add_scalar(self, event: Scalar, update: Update) -> None:
        self.series.setdefault(event.tag, []).append((event.step, event.value, event.wall_time))
        self._at_step.setdefault(event.tag, {})[event.step] = event.value
        self._pending.setdefault(event.step, {})[event.tag] = event.value
        steps = update.eval_steps if event.tag.startswith("eval/") else update.train_steps
        if event.tag in ("train/loss", "eval/loss") and event.step not in steps:
            steps.append(event.step)

    def _new_alerts(self, final: bool) -> list[dict]:
        """The worker's alerts.jsonl when our callback ran; else the rules applied here, on the stream."""
        if self.has_worker_alerts:
            self._pending.clear()
            return self._read_alert_file()
        ready = [s for s in sorted(self._pending) if final or self.finished or s < max(self._pending)]
        fired = []
        for step in ready:  # a step's tags may still be arriving: judge it once a later step shows up
            fired += [a.to_json() for a in self._engine.feed(step, self._pending.pop(step))]
        return fired

    @property
    def has_worker_alerts(self) -> bool:
        return (self.logdir / OWN_DIR).is_dir() or (self.run_dir / OWN_DIR / "alerts.jsonl").is_file()

    def _read_alert_file(self) -> list[dict]:
        path = self.run_dir / OWN_DIR / "alerts.jsonl"
        try:
            with open(path, "rb") as handle:
                handle.seek(self._alerts_offset)
                data = handle.read()
        except OSError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self._alerts_offset += len(complete)
        alerts = []
        for line in complete.split(b"\n")[:-1]:
            self._alert_lines += 1
            alert = alert_record(line)
            if alert is not None:
                alerts.append(alert)
            elif line.strip() and not self._bad_alert_line_seen:
                self._bad_alert_line_seen = True
                self._warnings.append(f"{path}:{self._alert_lines}: not an alert record (expected one JSON object "
                                      "per line); skipped it and any other such line")
        return alerts

    # -- derived values ------------------------------------------------------------------------------

    def values(self, tag: str) -> list[float]:
        return [v for _, v, _ in self.series.get(tag, [])]

    def latest(self, tag: str) -> float | None:
        points = self.series.get(tag)
        return points[-1][1] if points else None

    def value_at(self, tag: str, step: int) -> float | None:
        """The tag's value logged at `step` (the last one, if logged twice), None if it was not."""
        return self._at_step.get(tag, {}).get(step)

    @property
    def step(self) -> int:
        points = self.series.get("train/loss") or self.series.get("train/learning_rate") or []
        return max((s for s, _, _ in points), default=0)

    @property
    def finished(self) -> bool:
        return FINISHED_TAG in self.series

    @property
    def max_steps(self) -> int | None:
        value = self.latest(MAX_STEPS_TAG)
        if value:
            return int(value)
        return _total_steps_from_trainer_log(self.run_dir / "trainer_log.jsonl")

    def steps_per_second(self, window: int = 20) -> float | None:
        """Steps per second over this launch's last `window` logged steps: after `--resume` the steps logged by the
        earlier launches (and the time between launches) do not count."""
        since = self.launch_started_at or float("-inf")
        points = [(s, w) for s, _, w in self.series.get("train/loss", []) if w >= since][-window:]
        if len(points) < 2 or points[-1][1] <= points[0][1]:
            return None
        return (points[-1][0] - points[0][0]) / (points[-1][1] - points[0][1])

    def eta_seconds(self) -> float | None:
        rate, total = self.steps_per_second(), self.max_steps
        if not rate or not total or self.finished or self.end is not None:
            return None
        return max(0.0, (total - self.step) / rate)

    @property
    def effective_batch(self) -> int | None:
        cfg = self.resolved_config
        world = int(self.runtime.get("world_size") or 1)
        try:
            return int(cfg["per_device_train_batch_size"]) * int(cfg.get("gradient_accumulation_steps", 1)) * world
        except (KeyError, TypeError, ValueError):
            return None


def _total_steps_from_trainer_log(path: Path) -> int | None:
    """LLaMA-Factory's trainer_log.jsonl has total_steps on each line (docs/upstream-notes.md#trainer-log)."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
        return int(json.loads(first)["total_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
