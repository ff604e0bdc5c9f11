"""The block `dpo-launch train` prints when its run has ended: how it ended, the final and best metrics, the
alerts, the wall time, where the model, TensorBoard logs and rank logs are, and the commands to view the run
(and to resume it, when it stopped with a checkpoint to resume from).

Read from the run directory alone (status.json, the event files, alerts.jsonl, the checkpoints), like `report`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from launcher.layout import complete_checkpoints, logs_dir, tensorboard_dir, weight_files
from launcher.observe.monitor import alert_line, fmt, fmt_duration
from launcher.observe.report import REPORT_DIR, final_and_best
from launcher.observe.run_state import RunDirError, RunState, find_logdir
from launcher.run_status import FINISHED, STOPPED_BY_ALERT, RunStatus, read_status

# (label, tag suffix, which value is best)
SUMMARY_METRICS = (("loss", "loss", "min"), ("acc", "rewards/accuracies", "max"), ("margin", "rewards/margins", "max"),
                   ("chosen", "rewards/chosen", "max"), ("rejected", "rewards/rejected", "min"))
SHOWN_ALERTS = 5


def summary_lines(output_dir: Path, resume_command: Sequence[str] | None = None) -> list[str]:
    """The end-of-run block; `resume_command` (argv) is shown when the run can be resumed."""
    status = read_status(output_dir)
    state = _state(output_dir)
    ended = _how_it_ended(status, state)
    wall = status.ended_at - status.started_at if status and status.ended_at and status.started_at else None
    total = state.max_steps if state is not None else None
    steps = f"{state.step if state else 0}/{total} steps" if total else f"{state.step if state else 0} steps"
    lines = [f"dpo-launch train: {ended}; {steps} in {fmt_duration(wall)}"]
    lines += _metric_lines(state)
    lines += _alert_lines(state)
    finished = status is not None and status.state == FINISHED
    checkpoints = complete_checkpoints(output_dir)
    lines += _places(output_dir, finished, checkpoints)
    if not finished and checkpoints and resume_command:
        lines.append(f"  resume:      {shlex.join(resume_command)}   (from {checkpoints[-1].name})")
    return lines


def _how_it_ended(status: RunStatus | None, state: RunState | None) -> str:
    """'finished', the alert that stopped it, else the state and exit code (the launcher's closing line, just
    above, says the rest)."""
    if status is None:
        return state.end.summary if state is not None and state.end is not None else "ended"
    if status.state == STOPPED_BY_ALERT and state is not None and state.end is not None:
        return state.end.summary
    return status.state if status.state == FINISHED else f"{status.state} (exit {status.exit_code})"


def _state(output_dir: Path) -> RunState | None:
    try:
        state = RunState(output_dir, find_logdir(output_dir))
    except RunDirError:  # no step was logged
        return None
    state.poll(final=True)
    state.take_warnings()
    return state


def _metric_lines(state: RunState | None) -> list[str]:
    if state is None or not state.series.get("train/loss"):
        return ["  metrics:     none (no step was logged)"]
    lines = []
    for kind in ("train", "eval"):
        finals, bests = [], []
        for label, suffix, best in SUMMARY_METRICS:
            final, top = final_and_best(state, f"{kind}/{suffix}", best)
            if final is not None:
                finals.append(f"{label} {fmt(final[1])}")
            if top is not None:
                bests.append(f"{label} {fmt(top[1])} (step {top[0]})")
        if finals:
            name = "final" if kind == "train" else "eval final"
            step = state.series[f"{kind}/loss"][-1][0] if state.series.get(f"{kind}/loss") else state.step
            lines.append(f"  {name + ':':<12} step {step}: " + " · ".join(finals))
            lines.append(f"  {('best' if kind == 'train' else 'eval best') + ':':<12} " + " · ".join(bests))
    return lines


def _alert_lines(state: RunState | None) -> list[str]:
    alerts = state.alerts if state is not None else []
    if not alerts:
        return ["  alerts:      none"]
    lines = [f"  alerts:      {len(alerts)}"]
    lines += [f"    {alert_line(alert)}" for alert in alerts[:SHOWN_ALERTS]]
    if len(alerts) > SHOWN_ALERTS:
        lines.append(f"    ... and {len(alerts) - SHOWN_ALERTS} more (dpo-launch report lists them all)")
    return lines


def _places(output_dir: Path, finished: bool, checkpoints: list[Path]) -> list[str]:
    out = shlex.quote(str(output_dir))
    weights = weight_files(output_dir)
    if finished and weights:
        model = f"{output_dir} ({', '.join(p.name for p in weights)})"
    elif checkpoints:
        model = f"{checkpoints[-1]} (the last complete checkpoint; no final model: the run did not finish)"
    else:
        model = "none saved"
    return [f"  model:       {model}",
            f"  tensorboard: {tensorboard_dir(output_dir)}   view: dpo-launch tensorboard {out}",
            f"  report:      dpo-launch report {out}   (writes {output_dir / REPORT_DIR}/report.md and plots)",
            f"  logs:        {_rank_logs(logs_dir(output_dir))}   (everything the ranks printed)"]


def _rank_logs(logs: Path) -> str:
    """The rank logs this machine has (on a multi-node run without a shared file system, its own ranks' only)."""
    def rank(path: Path) -> int:
        number = path.stem.removeprefix("rank-")
        return int(number) if number.isdigit() else -1

    found = sorted(logs.glob("rank-*.log"), key=rank)
    if len(found) == 1:
        return str(found[0])
    if not found:
        return str(logs)
    return f"{logs} ({', '.join(path.name for path in found)})" if len(found) <= 4 else \
        f"{logs} ({len(found)} rank logs, {found[0].name} to {found[-1].name})"
