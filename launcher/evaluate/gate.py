"""The quality gate: `--gate "accuracy>=0.7,win_rate>=0.6"`. Pure.

Each condition is METRIC OP NUMBER with OP one of >=, >, <=, <. For `win_rate` the lower bound of the Wilson
95% interval is compared (launcher.evaluate.stats), not the point estimate: a gate passed on 10 prompts by luck
is no gate. The metrics are those `dpo-launch eval` computes (METRICS); a gate naming one the evaluation does
not compute is a usage error before anything runs.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from launcher.errors import UsageError

# gate name -> (what it is, the evaluation that computes it)
METRICS = {
    "accuracy": ("reward accuracy on the held-out pairs", "preference"),
    "margin": ("mean reward margin on the held-out pairs", "preference"),
    "loss": ("loss on the held-out pairs", "preference"),
    "chosen_logps": ("mean log-prob of the chosen responses", "preference"),
    "rejected_logps": ("mean log-prob of the rejected responses", "preference"),
    "win_rate": ("lower bound of the Wilson 95% interval of the win rate", "win_rate"),
}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
CONDITION = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class Check:
    condition: Condition
    value: float | None  # what was compared (the Wilson lower bound for win_rate)
    passed: bool
    reason: str


def parse_gate(text: str) -> list[Condition]:
    """The conditions of a --gate string; UsageError naming the bad part."""
    conditions = []
    for part in [p for p in text.split(",") if p.strip()] or [text]:
        match = CONDITION.match(part)
        if not match:
            raise UsageError(f"--gate: cannot read {part.strip()!r}: expected METRIC OP NUMBER (OP one of "
                             f">=, >, <=, <), e.g. accuracy>=0.7,win_rate>=0.6")
        metric, op, number = match.groups()
        if metric not in METRICS:
            raise UsageError(f"--gate: unknown metric {metric!r}: expected one of {', '.join(METRICS)}")
        conditions.append(Condition(metric, op, float(number)))
    return conditions


def needs(conditions: list[Condition]) -> set[str]:
    """The evaluations ('preference', 'win_rate') the conditions need."""
    return {METRICS[c.metric][1] for c in conditions}


def check_gate(conditions: list[Condition], metrics: Mapping[str, float | None]) -> list[Check]:
    """Each condition against the metrics; a metric that could not be computed fails its condition."""
    checks = []
    for condition in conditions:
        value = metrics.get(condition.metric)
        what = "win_rate (Wilson 95% lower bound)" if condition.metric == "win_rate" else condition.metric
        if value is None:
            checks.append(Check(condition, None, False, f"{what} was not computed"))
            continue
        passed = OPERATORS[condition.op](value, condition.threshold)
        verdict = "pass" if passed else "FAIL"
        checks.append(Check(condition, value, passed,
                            f"{what} {value:.3f} {condition.op} {condition.threshold:g}: {verdict}"))
    return checks


def gate_passed(checks: list[Check]) -> bool:
    return all(check.passed for check in checks)
