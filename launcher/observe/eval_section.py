"""The "Evaluation" section of report.md, from `dpo-launch eval`'s `<output_dir>/dpo-launch/eval/summary.json`."""

from __future__ import annotations

from pathlib import Path

from launcher.layout import eval_dir
from launcher.observe.run_state import read_json

ROWS = (("accuracy", "reward accuracy"), ("margin", "reward margin"), ("chosen_logps", "chosen log-prob"),
        ("rejected_logps", "rejected log-prob"), ("loss", "loss"))


def evaluation_lines(run_dir: Path) -> list[str]:
    """Markdown lines; a pointer to `dpo-launch eval` when the run was not evaluated."""
    summary = read_json(eval_dir(run_dir) / "summary.json")
    if not summary:
        return [f"Not evaluated (run `dpo-launch eval {run_dir}`)."]
    lines = [f"From `dpo-launch eval` at step {summary.get('step')} ({summary.get('evaluated_at')}).", ""]
    preference = summary.get("preference") or {}
    metrics = preference.get("metrics") or {}
    if metrics:
        lines += [f"Held-out pairs `{', '.join(preference.get('pairs') or [])}` ({preference.get('count')} pairs), "
                  f"reference `{preference.get('reference')}`:", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {label} | {metrics[key]:.4f} |" for key, label in ROWS if isinstance(metrics.get(key), float)]
        lines.append("")
    lines += _win_rate_lines(summary.get("win_rate") or {})
    gate = summary.get("gate")
    if gate:
        lines.append(f"Gate `{gate.get('expression')}`: **{'passed' if gate.get('passed') else 'FAILED'}**")
        lines += [f"- {check.get('reason')}" for check in gate.get("checks") or []]
    return lines


def _win_rate_lines(part: dict) -> list[str]:
    counts = part.get("counts") or {}
    if not counts:
        return []
    rate = counts.get("win_rate")
    shown = f"{rate:.3f}" if isinstance(rate, float) else "n/a"
    return [f"Win rate against `{part.get('baseline')}` judged by `{part.get('judge')}`: {shown} "
            f"(Wilson 95% {counts.get('wilson95_low', 0):.3f} to {counts.get('wilson95_high', 1):.3f}; "
            f"{counts.get('wins')} wins, {counts.get('losses')} losses, {counts.get('ties')} ties, "
            f"{counts.get('invalid')} invalid); mean length {part.get('mean_length', {}).get('policy')} vs "
            f"{part.get('mean_length', {}).get('baseline')} tokens", ""]
