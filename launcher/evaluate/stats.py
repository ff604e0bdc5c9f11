"""Win-rate arithmetic: counts, the Wilson score interval, response lengths. Pure.

A tie counts half a win (AlpacaEval's convention), so win rate = (wins + ties/2) / (wins + losses + ties);
verdicts that are invalid (an unparseable judge answer) or skipped are counted and reported, never in n.
The interval is Wilson's score interval at 95% (z = 1.959964), computed on that count of successes; the gate
compares its lower bound, so a small sample cannot pass a gate on luck.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
WIN, LOSS, TIE, INVALID, SKIP = "win", "loss", "tie", "invalid", "skip"
OUTCOMES = (WIN, LOSS, TIE, INVALID, SKIP)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion; (0.0, 1.0) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class WinRate:
    wins: int
    losses: int
    ties: int
    invalid: int
    skipped: int
    order_disagreements: int  # pairs whose two orders disagreed (counted as ties)

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def rate(self) -> float | None:
        return (self.wins + self.ties / 2) / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.wins + self.ties / 2, self.n)

    def to_dict(self) -> dict:
        low, high = self.interval
        return {**asdict(self), "n": self.n, "win_rate": self.rate, "wilson95_low": low, "wilson95_high": high}


def win_rate(outcomes: Iterable[str], order_disagreements: int = 0) -> WinRate:
    """Count outcomes (win/loss/tie/invalid/skip, from the policy's side)."""
    counts = Counter(outcomes)
    unknown = set(counts) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown outcomes {sorted(unknown)}")
    return WinRate(counts[WIN], counts[LOSS], counts[TIE], counts[INVALID], counts[SKIP], order_disagreements)


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None
