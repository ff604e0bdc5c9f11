"""How `dpo-launch monitor` shows a run: a rich Live panel on a terminal, plain log lines elsewhere.

`follow(run_dir, ...)` is also what `dpo-launch train` can call to show the run it launched (pass
`should_stop` = "has the job ended?" and `wait=True`, since the event files appear only at the first log).
Following ends when the run has ended (finished, stopped by an alert, interrupted, failed, launcher lost:
launcher.observe.run_end) and its last events are read; the last line says how it ended. What cannot be read is
skipped and named once on stderr.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from launcher.observe.run_end import judge_end
from launcher.observe.run_state import RunDirError, RunState, Update, find_logdir
from launcher.run_status import read_status

SPARK = "▁▂▃▄▅▆▇█"
# (label, train tag, eval tag)
ROWS = (
    ("loss", "train/loss", "eval/loss"),
    ("rewards/chosen", "train/rewards/chosen", "eval/rewards/chosen"),
    ("rewards/rejected", "train/rewards/rejected", "eval/rewards/rejected"),
    ("rewards/margins", "train/rewards/margins", "eval/rewards/margins"),
    ("rewards/accuracies", "train/rewards/accuracies", "eval/rewards/accuracies"),
    # the guides say to watch these: a falling chosen log-prob is likelihood displacement
    ("logps/chosen", "train/logps/chosen", "eval/logps/chosen"),
    ("logps/rejected", "train/logps/rejected", "eval/logps/rejected"),
    ("kl (mean)", "train/kl_mean", None),
    ("grad_norm", "train/grad_norm", None),
    ("learning_rate", "train/learning_rate", None),
)
PLAIN_TAGS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
              "logps/rejected")
SETTLE_SECONDS = 3.0  # after the last step, keep reading this long for the final eval


FLAT = SPARK[len(SPARK) // 2 - 1]  # a series that does not move is drawn in the middle, not as its minimum


def sparkline(values: list[float], width: int = 40) -> str:
    """The last `width` values as block characters scaled between their min and max (`spark_range` says which);
    a flat series is a middle row; NaN shows as '·'."""
    values = values[-width:]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "·" * len(values)
    low, high = min(finite), max(finite)
    if high == low:
        return "".join(FLAT if math.isfinite(v) else "·" for v in values)
    return "".join(SPARK[round((v - low) / (high - low) * (len(SPARK) - 1))] if math.isfinite(v) else "·"
                   for v in values)


def spark_range(values: list[float], width: int = 40) -> str:
    """The scale of `sparkline(values, width)`: 'min..max' of the values it draws, 4 significant digits ('' when
    none is finite)."""
    finite = [v for v in values[-width:] if math.isfinite(v)]
    return f"{min(finite):.4g}..{max(finite):.4g}" if finite else ""


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.3e}"
    return f"{value:.4f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def progress_line(state: RunState) -> str:
    total = state.max_steps
    step = f"step {state.step}/{total} ({100 * state.step / total:.0f}%)" if total else f"step {state.step}"
    rate, batch = state.steps_per_second(), state.effective_batch
    if state.end is not None:
        status = state.end.summary
    else:
        status = "training loop ended, finishing" if state.finished else f"ETA {fmt_duration(state.eta_seconds())}"
    parts = [step, status]
    if rate:
        parts.append(f"{rate:.2f} steps/s" + (f", {rate * batch:.1f} samples/s" if batch else ""))
    return " · ".join(parts)


def metric_table(state: RunState, width: int = 40):
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    shown = min(width, max((len(state.series.get(tag, [])) for _, tag, _ in ROWS), default=0))
    for column in ("metric", "train", f"trend, last {shown} logs", "min..max", "eval"):
        table.add_column(column, no_wrap=True)
    for label, train_tag, eval_tag in ROWS:
        if train_tag not in state.series and (eval_tag is None or eval_tag not in state.series):
            continue
        eval_value = fmt(state.latest(eval_tag)) if eval_tag and eval_tag in state.series else ""
        values = state.values(train_tag)
        table.add_row(label, fmt(state.latest(train_tag)), sparkline(values, width), spark_range(values, width),
                      eval_value)
    return table


def snapshot(state: RunState, console_width: int = 100):
    """The whole view as one rich renderable, its sparklines sized to fit `console_width`."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    spark_width = max(10, min(40, console_width - 62))  # the rest: metric, train, min..max and eval columns, border
    parts = [Text(progress_line(state)), metric_table(state, spark_width)]
    if state.alerts:
        parts.append(Text(f"alerts ({len(state.alerts)}):", style="bold"))
        parts += [Text(alert_line(a), style="red" if a.get("severity") == "error" else "yellow")
                  for a in state.alerts[-5:]]
    else:
        parts.append(Text("alerts: none"))
    return Panel(Group(*parts), title=f"dpo-launch monitor: {state.run_dir}", expand=False)


def alert_line(alert: dict) -> str:
    line = f"{alert.get('severity', 'warning')}[{alert.get('rule')}] step {alert.get('step')}: {alert.get('message')}"
    return f"{line} ({alert['hint']})" if alert.get("hint") else line


def plain_lines(state: RunState, update: Update) -> list[str]:
    """One line per new logged step, eval and alert, for logs and pipes."""
    total = f"/{state.max_steps}" if state.max_steps else ""
    lines = []
    for kind, steps in (("train", update.train_steps), ("eval", update.eval_steps)):
        for step in steps:
            values = {label: state.value_at(f"{kind}/{label}", step) for label in PLAIN_TAGS}
            shown = " ".join(f"{label}={fmt(v)}" for label, v in values.items() if v is not None)
            lines.append(f"{'step' if kind == 'train' else 'eval at step'} {step}{total}: {shown}")
    lines += [f"alert: {alert_line(a)}" for a in update.alerts]
    return lines


def follow(run_dir: Path | str, *, once: bool = False, interval: float = 1.0, console=None, live: bool | None = None,
           should_stop: Callable[[], bool] | None = None, wait: bool = False) -> int:
    """Show the run until it finishes (or `should_stop()`); `once` prints one snapshot. Returns an exit code."""
    from rich.console import Console

    console = console or Console()
    state = _open_state(run_dir, wait, interval, should_stop)
    if state is None:
        return 0
    if once:
        state.poll()
        _warn(state)
        console.print(snapshot(state, console.width))
        return 0
    live = console.is_terminal if live is None else live
    return _follow_live(state, console, interval, should_stop) if live else \
        _follow_plain(state, console, interval, should_stop)


def _open_state(run_dir, wait: bool, interval: float, should_stop) -> RunState | None:
    """The run's state once its event files exist; None when there is nothing to follow (the caller stopped
    waiting, or the run ended before it logged a step, which is then said)."""
    while True:
        try:
            return RunState(run_dir, find_logdir(run_dir))
        except RunDirError:
            ended = _ended_before_logging(run_dir)
            if ended:
                print(ended, file=sys.stderr, flush=True)
                return None
            if not wait or (should_stop and should_stop()):
                if wait:
                    return None
                raise
            time.sleep(interval)


def _ended_before_logging(run_dir) -> str | None:
    if not Path(run_dir).is_dir():
        return None
    end = judge_end(read_status(run_dir), step=0, max_steps=None, loop_ended=False, alerts=[])
    return f"dpo-launch monitor: {run_dir}: no step was logged; the run ended: {end.summary}" if end else None


def _warn(state: RunState) -> None:
    for warning in state.take_warnings():
        print(f"dpo-launch monitor: {warning}", file=sys.stderr, flush=True)


def _follow_plain(state: RunState, console, interval: float, should_stop) -> int:
    for update in _updates(state, interval, should_stop):
        for line in plain_lines(state, update):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(progress_line(state), markup=False, highlight=False, soft_wrap=True)
    return 0


def _follow_live(state: RunState, console, interval: float, should_stop) -> int:
    from rich.live import Live

    with Live(snapshot(state, console.width), console=console, refresh_per_second=4) as view:
        for _ in _updates(state, interval, should_stop):
            view.update(snapshot(state, console.width))
    return 0


def _updates(state: RunState, interval: float, should_stop):
    """Poll until the run has finished and gone quiet, or `should_stop()`; yield each poll's Update."""
    last_news = time.monotonic()
    while True:
        stopping = bool(should_stop and should_stop())
        update = state.poll()
        _warn(state)
        if update.train_steps or update.eval_steps or update.alerts:
            last_news = time.monotonic()
        yield update
        if stopping or (state.end is not None and time.monotonic() - last_news >= SETTLE_SECONDS):
            return
        time.sleep(interval)
