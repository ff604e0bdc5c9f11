"""Health alerts for a DPO/KTO run: small pure rules over the stream of logged metrics.

The stream is what TensorBoard holds: one point per logging step, tags as HF's TensorBoardCallback
writes them (`train/loss`, `train/rewards/margins`, `eval/rewards/accuracies`, ...). The worker's
callback (`launcher/worker/metrics.py`) feeds the live stream; `monitor` and `report` feed the event files.
Every rule is a function `(History, Thresholds) -> Alert | None`; `AlertEngine` runs them after each
point and lets a rule fire again only `repeat_after` steps after it last fired.

Thresholds are documented on `Thresholds` and set with `name=value` strings (`parse_thresholds`),
from `dpo-launch train --alert-threshold` or the `DPO_LAUNCH_ALERT_THRESHOLDS` variable in the worker.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from launcher.check.diagnostics import expected_one_of, suggestion_hint

LN2 = math.log(2.0)
ERROR, WARNING = "error", "warning"

LOSS, GRAD_NORM = "train/loss", "train/grad_norm"
MARGINS, ACCURACY = "train/rewards/margins", "train/rewards/accuracies"
CHOSEN_LOGPS, EVAL_ACCURACY = "train/logps/chosen", "eval/rewards/accuracies"
CHOSEN, REJECTED, EVAL_LOSS = "train/rewards/chosen", "train/rewards/rejected", "eval/loss"


@dataclass(frozen=True)
class Thresholds:
    """Defaults for every rule; each is a `name=value` away from being changed."""

    window: int = 20                 # trailing logged points most rules look at
    repeat_after: int = 100          # steps before the same rule may fire again
    margin_min_steps: int = 100      # margins-near-zero: only judged from this step on
    margin_zero_tol: float = 0.02    # ... mean |rewards/margins| over the window below this is "near zero"
    early_steps: int = 50            # accuracy-saturated-early: "early" means at or before this step
    saturated_accuracy: float = 0.999  # ... rewards/accuracies at least this
    saturated_loss: float = 0.05     # ... with loss at most this
    saturated_points: int = 3        # ... for this many consecutive logged points
    ln2_min_steps: int = 50          # loss-stuck-at-ln2: only judged from this step on
    ln2_tol: float = 0.002           # ... every loss in the window within this of ln 2
    displacement_min_drop: float = 1.0   # likelihood-displacement: chosen logps fall at least this (nats)
    displacement_min_gain: float = 0.05  # ... while margins grow at least this, over the window's trend lines
    trend_t: float = 3.0             # ... each trend's t-statistic at least this ("steadily", not noise)
    eval_min_points: int = 4         # eval-overoptimization: eval points needed
    eval_smoothing: int = 2          # ... eval accuracy averaged over this many consecutive evals
    eval_accuracy_drop: float = 0.05  # ... latest average this far below the best earlier average
    train_accuracy_rise: float = 0.05  # ... while mean train accuracy rose this much since that best
    falling_chosen_reward: float = 0.3   # rewards-both-falling: chosen reward (window's last 3) below minus this
    falling_min_gain: float = 0.05   # ... while margins grow at least this; all three trends with t >= trend_t
    eval_loss_rise: float = 0.25     # eval-loss-rising: eval loss (means of eval_smoothing evals) this share above
    eval_loss_min_points: int = 3    # ... its lowest earlier mean, with at least this many evals, while mean
    #                                      train accuracy since that lowest eval is not below its mean before
    eval_loss_train_accuracy: float = 0.8  # ... and is at least this (the policy does fit the training pairs)
    spike_factor: float = 10.0       # grad-norm-spike: grad_norm above this x the window's median
    spike_min_points: int = 5        # ... with at least this many earlier points
    spike_floor: float = 1e-3        # ... and above this absolute value


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str
    step: int
    message: str
    hint: str
    values: dict = field(default_factory=dict)

    def render(self) -> str:
        return f"{self.severity}[{self.rule}] step {self.step}: {self.message} ({self.hint})"

    def to_json(self) -> dict:
        return asdict(self)


class History:
    """Per-tag series of (step, value), in the order they arrived."""

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[int, float]]] = {}
        self.step = 0

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        self.step = max(self.step, step)
        for tag, value in metrics.items():
            self.series.setdefault(tag, []).append((step, float(value)))

    def values(self, tag: str, last: int | None = None) -> list[float]:
        points = self.series.get(tag, [])
        return [v for _, v in (points[-last:] if last else points)]

    def points(self, tag: str) -> list[tuple[int, float]]:
        return self.series.get(tag, [])

    def latest(self, tag: str) -> tuple[int, float] | None:
        points = self.series.get(tag)
        return points[-1] if points else None


def _all_finite(values: Iterable[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def loss_not_finite(h: History, th: Thresholds) -> Alert | None:
    # HF replaces a NaN/inf step loss by the running mean (logging_nan_inf_filter, on by default), so
    # train/loss can look fine: grad_norm and the reward metrics show the NaN.
    watched = [t for t in (LOSS, GRAD_NORM) if t in h.series] + sorted(
        t for t in h.series if t.startswith(("train/rewards/", "train/logps/")))
    latest = {t: point for t in watched if (point := h.latest(t)) is not None}
    bad = {t: value for t, (step, value) in latest.items() if step == h.step and not math.isfinite(value)}
    if not bad:
        return None
    return Alert("loss-not-finite", ERROR, h.step, f"non-finite values: {_fmt(bad)}",
                 "lower the learning rate, check the data for empty answers, use bf16 over fp16", bad)


def margins_near_zero(h: History, th: Thresholds) -> Alert | None:
    margins = h.values(MARGINS, th.window)
    if h.step < th.margin_min_steps or len(margins) < 3 or not _all_finite(margins):
        return None
    mean_abs = statistics.fmean(abs(m) for m in margins)
    if mean_abs >= th.margin_zero_tol:
        return None
    return Alert("margins-near-zero", WARNING, h.step,
                 f"rewards/margins still near zero after {h.step} steps (mean |margin| {mean_abs:.4f} "
                 f"over the last {len(margins)} points < {th.margin_zero_tol})",
                 "not learning: chosen and rejected may be too similar; raise the learning rate or pref_beta",
                 {"mean_abs_margin": mean_abs})


def accuracy_saturated_early(h: History, th: Thresholds) -> Alert | None:
    acc, loss = h.values(ACCURACY, th.saturated_points), h.values(LOSS, th.saturated_points)
    if h.step > th.early_steps or len(acc) < th.saturated_points or len(loss) < th.saturated_points:
        return None
    if min(acc) < th.saturated_accuracy or max(loss) > th.saturated_loss:
        return None
    return Alert("accuracy-saturated-early", WARNING, h.step,
                 f"rewards/accuracies is {acc[-1]:.3f} with loss {loss[-1]:.4f} by step {h.step}",
                 "pairs may be too easy (rejected trivially wrong) or the reference model is not the "
                 "policy's starting point; check the data and `dpo-launch plan`'s reference",
                 {"accuracy": acc[-1], "loss": loss[-1]})


def loss_stuck_at_ln2(h: History, th: Thresholds) -> Alert | None:
    loss = h.values(LOSS, th.window)
    if h.step < th.ln2_min_steps or len(loss) < 3:
        return None
    if not all(abs(v - LN2) <= th.ln2_tol for v in loss):
        return None
    return Alert("loss-stuck-at-ln2", WARNING, h.step,
                 f"loss has stayed at ln 2 = {LN2:.4f} (within {th.ln2_tol}) for the last {len(loss)} points",
                 "nothing moves: check the learning rate (0? warmup too long?), frozen parameters, "
                 "and that chosen differs from rejected", {"loss": loss[-1]})


def likelihood_displacement(h: History, th: Thresholds) -> Alert | None:
    # "Steadily": both least-squares trends over the window must be clear of the step-to-step noise.
    logps, margins = h.values(CHOSEN_LOGPS, th.window), h.values(MARGINS, th.window)
    if min(len(logps), len(margins)) < max(6, th.window // 2) or not _all_finite(logps + margins):
        return None
    (drop, drop_t), (gain, gain_t) = _trend(logps), _trend(margins)
    drop, drop_t = -drop, -drop_t
    if drop < th.displacement_min_drop or gain < th.displacement_min_gain or min(drop_t, gain_t) < th.trend_t:
        return None
    return Alert("likelihood-displacement", WARNING, h.step,
                 f"chosen log-probs fell by {drop:.3f} while margins grew by {gain:.3f} over the last "
                 f"{len(logps)} points", "the policy pushes both answers down (likelihood displacement): "
                 "add an SFT term (pref_ftx), lower the learning rate, or try ipo", {"drop": drop, "gain": gain})


def rewards_both_falling(h: History, th: Thresholds) -> Alert | None:
    """Margins grow only because the rejected reward falls faster than the chosen one: the chosen answer, which
    DPO should make more likely, becomes less likely than under the reference (likelihood displacement seen in
    the rewards, for runs that do not log logps or where they are noisy)."""
    chosen, rejected = h.values(CHOSEN, th.window), h.values(REJECTED, th.window)
    if min(len(chosen), len(rejected)) < max(6, th.window // 2) or not _all_finite(chosen + rejected) or \
            len(chosen) != len(rejected):
        return None
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]  # rewards/margins is their difference
    (chosen_change, chosen_t), (rejected_change, rejected_t), (gain, gain_t) = map(_trend, (chosen, rejected, margins))
    now = statistics.fmean(chosen[-3:])
    if now > -th.falling_chosen_reward or chosen_change >= 0 or rejected_change >= 0 or gain < th.falling_min_gain:
        return None
    if min(-chosen_t, -rejected_t, gain_t) < th.trend_t:
        return None
    since = _falling_since(h.points(CHOSEN))
    return Alert("rewards-both-falling", WARNING, h.step,
                 f"rewards/chosen fell to {now:.3f} and rewards/rejected to {statistics.fmean(rejected[-3:]):.3f} "
                 f"while margins grew by {gain:.3f} over the last {len(chosen)} points; the chosen reward has been "
                 f"below 0 since step {since}: the margin grows only because the rejected answer falls faster, and "
                 "the chosen answer is less likely than under the reference (it should rise)",
                 "lower the learning rate, add an SFT term (pref_ftx, e.g. 0.1 to 1.0) or try pref_loss: ipo; "
                 "keep an earlier checkpoint if generations got worse",
                 {"chosen": now, "margin_gain": gain, "since_step": since})


def _falling_since(points: list[tuple[int, float]]) -> int:
    """The first step of the trailing run of negative values (where the chosen reward went below 0 for good)."""
    since = points[-1][0]
    for step, value in reversed(points):
        if not value < 0:
            break
        since = step
    return since


def eval_loss_rising(h: History, th: Thresholds) -> Alert | None:
    """Eval loss climbs well above its best while training keeps its accuracy: over-fitting the training pairs,
    whatever eval accuracy does (eval-overoptimization needs eval accuracy to have been high first)."""
    evals = [(s, v) for s, v in h.points(EVAL_LOSS) if math.isfinite(v)]
    k = th.eval_smoothing
    if len(evals) < max(th.eval_loss_min_points, k + 1):
        return None
    means = [(evals[i][0], evals[i + k - 1][0], statistics.fmean(v for _, v in evals[i:i + k]))
             for i in range(len(evals) - k + 1)]
    _, best_step, best = min(means[:-1], key=lambda p: p[2])
    _, last_step, last = means[-1]
    if best <= 0 or last < best * (1 + th.eval_loss_rise):
        return None
    train = h.points(ACCURACY)
    before = [v for s, v in train if s <= best_step][-th.window:]
    after = [v for s, v in train if best_step < s <= last_step][-th.window:]
    if not before or not after or statistics.fmean(after) < statistics.fmean(before):
        return None
    accuracy = statistics.fmean(after)
    if accuracy < th.eval_loss_train_accuracy:  # not over-fitting: the policy does not even fit the training pairs
        return None
    return Alert("eval-loss-rising", WARNING, h.step,
                 f"eval loss rose from {best:.3f} at step {best_step} to {last:.3f} at step {last_step} (each the "
                 f"mean of {k} evals), {last / best - 1:.0%} above its best, while train accuracy was "
                 f"{accuracy:.3f}: since step {best_step} the policy fits the training pairs better and unseen "
                 "pairs worse", "over-fitting: keep the checkpoint nearest step "
                 f"{best_step} (load_best_model_at_end with metric_for_best_model: eval_loss), stop earlier, lower "
                 "the learning rate or pref_beta, or add training data",
                 {"best": best, "best_step": best_step, "last": last, "train_accuracy": accuracy})


def eval_overoptimization(h: History, th: Thresholds) -> Alert | None:
    # Means of `eval_smoothing` consecutive evals, so one noisy eval (small eval sets) does not fire it.
    evals = h.points(EVAL_ACCURACY)
    if len(evals) < th.eval_min_points:
        return None
    k = th.eval_smoothing
    means = [(evals[i + k - 1][0], statistics.fmean(v for _, v in evals[i:i + k])) for i in range(len(evals) - k + 1)]
    best_step, best = max(means[:-1], key=lambda p: p[1])
    last_step, last = means[-1]
    train = h.points(ACCURACY)
    before = [v for s, v in train if s <= best_step][-th.window:]
    after = [v for s, v in train if best_step < s <= last_step][-th.window:]
    if best - last < th.eval_accuracy_drop or not before or not after:
        return None
    rise = statistics.fmean(after) - statistics.fmean(before)
    if rise < th.train_accuracy_rise:
        return None
    return Alert("eval-overoptimization", WARNING, h.step,
                 f"eval accuracy fell from {best:.3f} (step {best_step}) to {last:.3f} while train accuracy "
                 f"rose by {rise:.3f} (means of {k} evals)", "over-optimization: lower pref_beta or the learning "
                 "rate, stop earlier (keep the best checkpoint) or try pref_loss: ipo",
                 {"best": best, "last": last, "train_rise": rise})


def grad_norm_spike(h: History, th: Thresholds) -> Alert | None:
    norms = h.points(GRAD_NORM)
    if len(norms) < th.spike_min_points + 1 or norms[-1][0] != h.step:
        return None
    previous = [v for _, v in norms[-th.window - 1:-1] if math.isfinite(v)]
    latest = norms[-1][1]
    if len(previous) < th.spike_min_points or not math.isfinite(latest):
        return None
    median = statistics.median(previous)
    if latest <= th.spike_floor or latest <= th.spike_factor * median:
        return None
    return Alert("grad-norm-spike", WARNING, h.step,
                 f"grad_norm {latest:.4g} is {latest / median if median else math.inf:.1f}x the median "
                 f"{median:.4g} of the previous {len(previous)} points",
                 "a bad batch or a learning rate too high: check max_grad_norm and the data near this step",
                 {"grad_norm": latest, "median": median})


Rule = Callable[[History, Thresholds], "Alert | None"]
RULES: dict[str, Rule] = {
    "loss-not-finite": loss_not_finite,
    "margins-near-zero": margins_near_zero,
    "accuracy-saturated-early": accuracy_saturated_early,
    "loss-stuck-at-ln2": loss_stuck_at_ln2,
    "likelihood-displacement": likelihood_displacement,
    "rewards-both-falling": rewards_both_falling,
    "eval-overoptimization": eval_overoptimization,
    "eval-loss-rising": eval_loss_rising,
    "grad-norm-spike": grad_norm_spike,
}
DEFAULT_STOP_ON = ("loss-not-finite",)


class AlertEngine:
    """Feeds points into a History and returns the alerts that fire at each one."""

    def __init__(self, thresholds: Thresholds | None = None, rules: Mapping[str, Rule] | None = None):
        self.thresholds = thresholds or Thresholds()
        self.rules = dict(rules or RULES)
        self.history = History()
        self._last_fired: dict[str, int] = {}

    def feed(self, step: int, metrics: Mapping[str, float]) -> list[Alert]:
        self.history.add(step, metrics)
        fired = []
        for name, rule in self.rules.items():
            last = self._last_fired.get(name)
            if last is not None and step - last < self.thresholds.repeat_after:
                continue
            alert = rule(self.history, self.thresholds)
            if alert is not None:
                self._last_fired[name] = step
                fired.append(alert)
        return fired


def evaluate_stream(points: Iterable[tuple[int, Mapping[str, float]]],
                    thresholds: Thresholds | None = None) -> list[Alert]:
    """All alerts over a whole recorded stream of (step, {tag: value})."""
    engine = AlertEngine(thresholds)
    return [alert for step, metrics in points for alert in engine.feed(step, metrics)]


def parse_thresholds(items: Iterable[str], base: Thresholds | None = None) -> Thresholds:
    """`["window=30", "spike_factor=5"]` -> Thresholds; ValueError with a 'did you mean' on bad input."""
    types = {f.name: f.type for f in fields(Thresholds)}
    changes: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in types:
            hint = suggestion_hint(name, types)
            raise ValueError(f"alert threshold '{item}': expected NAME=VALUE with NAME one of "
                             f"{expected_one_of(sorted(types))}" + (f" ({hint})" if hint else ""))
        try:
            changes[name] = int(text) if types[name] in (int, "int") else float(text)
        except ValueError:
            raise ValueError(f"alert threshold '{item}': '{text}' is not a number") from None
    return replace(base or Thresholds(), **changes)


def parse_stop_on(text: str | None) -> tuple[str, ...]:
    """`--stop-on`/DPO_LAUNCH_STOP_ON: comma-separated rule names, 'none', or unset for the default."""
    if text is None:
        return DEFAULT_STOP_ON
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    for name in names:
        if name not in RULES:
            hint = suggestion_hint(name, RULES)
            raise ValueError(f"--stop-on: expected one of {expected_one_of(list(RULES))} (or 'none') but got "
                             f"'{name}'" + (f" ({hint})" if hint else ""))
    return names


# How `dpo-launch train --stop-on/--alert-threshold` reach every rank's callbacks (launcher.worker.metrics).
STOP_ON_ENV = "DPO_LAUNCH_STOP_ON"
THRESHOLDS_ENV = "DPO_LAUNCH_ALERT_THRESHOLDS"


def settings_env(stop_on: str | None, thresholds: list[str]) -> dict[str, str]:
    """--stop-on and --alert-threshold as the environment the ranks read; ValueError names the bad flag."""
    names = parse_stop_on(stop_on)  # its message starts with "--stop-on: "
    try:
        parse_thresholds(thresholds)
    except ValueError as exc:
        raise ValueError(f"--alert-threshold: {exc}") from None
    settings = {STOP_ON_ENV: ",".join(names) or "none"}
    if thresholds:
        settings[THRESHOLDS_ENV] = ",".join(item.strip() for item in thresholds)
    return settings


def settings_from_env(environ: Mapping[str, str]) -> tuple[tuple[str, ...], Thresholds]:
    """(stop_on, thresholds) from DPO_LAUNCH_STOP_ON and DPO_LAUNCH_ALERT_THRESHOLDS."""
    stop_on = parse_stop_on(environ.get(STOP_ON_ENV))
    items = [i for i in environ.get(THRESHOLDS_ENV, "").split(",") if i.strip()]
    return stop_on, parse_thresholds(items)


def _trend(values: list[float]) -> tuple[float, float]:
    """(change over the series by its least-squares line, t-statistic of the slope); t is inf for a perfect line."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(values)
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    slope = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sxx
    residual = sum((v - mean_y - slope * (i - mean_x)) ** 2 for i, v in enumerate(values))
    stderr = math.sqrt(residual / (n - 2) / sxx) if n > 2 else 0.0
    t = slope / stderr if stderr > 0 else math.copysign(math.inf, slope) if slope else 0.0
    return slope * (n - 1), t


def _fmt(values: Mapping[str, float]) -> str:
    return ", ".join(f"{tag}={value}" for tag, value in values.items())
