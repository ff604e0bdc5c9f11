"""The end-of-run report: PNG plots of loss, rewards and learning rate, and `report.md`.

Written into `<run_dir>/dpo-launch/report/` from the run directory alone (event files, plan.json,
runtime.json, alerts.jsonl). matplotlib is imported inside the plotting function, with the Agg backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from launcher.atomic import atomic_write, write_text_atomic
from launcher.layout import OWN_DIR
from launcher.observe.eval_section import evaluation_lines
from launcher.observe.run_state import FINISHED_TAG, RunState

REPORT_DIR = Path(OWN_DIR) / "report"
EMA_WEIGHT = 0.85  # smoothing of the train curve drawn over the raw one (TensorBoard's default is 0.6)


@dataclass(frozen=True)
class Metric:
    name: str          # tag without the train/ or eval/ prefix
    title: str
    ylabel: str
    best: str | None   # "min", "max" or None (no "best" for a schedule)

    @property
    def file_name(self) -> str:
        return self.name.replace("/", "_") + ".png"


METRICS = (
    Metric("loss", "Loss", "loss", "min"),
    Metric("rewards/chosen", "Reward of the chosen answer", "β·(log π − log π_ref), chosen", "max"),
    Metric("rewards/rejected", "Reward of the rejected answer", "β·(log π − log π_ref), rejected", "min"),
    Metric("rewards/margins", "Reward margin (chosen − rejected)", "reward margin", "max"),
    Metric("rewards/accuracies", "Reward accuracy", "share of pairs with chosen > rejected", "max"),
    # No "best": a falling chosen log-prob with growing margins is likelihood displacement, not progress.
    Metric("logps/chosen", "Log-probability of the chosen answer", "log π(y_w|x), summed over tokens", None),
    Metric("logps/rejected", "Log-probability of the rejected answer", "log π(y_l|x), summed over tokens", None),
    Metric("learning_rate", "Learning rate", "learning rate", None),
    Metric("kl_mean", "KTO KL estimate (mean per micro-batch)", "KL", None),
)


def series(state: RunState, tag: str) -> tuple[list[int], list[float]]:
    points = state.series.get(tag, [])
    return [s for s, _, _ in points], [v for _, v, _ in points]


def ema(values: list[float], weight: float = EMA_WEIGHT) -> list[float]:
    """Debiased exponential moving average, as TensorBoard smooths (no lag towards the first value)."""
    out, last, count = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        count += 1
        last = weight * last + (1 - weight) * value
        out.append(last / (1 - weight ** count))
    return out


def plotted_metrics(state: RunState) -> list[Metric]:
    return [m for m in METRICS if f"train/{m.name}" in state.series or f"eval/{m.name}" in state.series]


def draw(ax, state: RunState, metric: Metric) -> None:
    """One metric on one axes: raw train (faint), smoothed train, eval (dots and line)."""
    steps, values = series(state, f"train/{metric.name}")
    if steps:
        smooth = len(values) >= 10 and metric.best is not None
        ax.plot(steps, values, color="tab:blue", alpha=0.35 if smooth else 1.0, linewidth=1,
                label="train" if not smooth else "train (raw)")
        if smooth:
            ax.plot(steps, ema(values), color="tab:blue", linewidth=2, label=f"train (EMA {EMA_WEIGHT})")
    eval_steps, eval_values = series(state, f"eval/{metric.name}")
    if eval_steps:
        ax.plot(eval_steps, eval_values, "o-", color="tab:orange", linewidth=2, markersize=4, label="eval")
    if metric.name == "rewards/accuracies":
        ax.set_ylim(-0.03, 1.03)
    if metric.name.startswith("rewards/") and metric.name != "rewards/accuracies":
        ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_title(metric.title + (": train and eval" if steps and eval_steps else ""))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metric.ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def write_plots(state: RunState, out_dir: Path) -> list[Path]:
    """One PNG per metric plus `overview.png` with all of them; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    metrics = plotted_metrics(state)
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        draw(ax, state, metric)
        written.append(_save(fig, out_dir / metric.file_name))
    if metrics:
        cols = 3
        rows = math.ceil(len(metrics) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), dpi=90, squeeze=False)
        for ax, metric in zip(axes.flat, metrics, strict=False):
            draw(ax, state, metric)
        for ax in list(axes.flat)[len(metrics):]:
            ax.set_visible(False)
        fig.suptitle(f"dpo-launch run {state.run_dir.name}", fontsize="x-large")
        written.append(_save(fig, out_dir / "overview.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_write(path, "wb") as handle:  # a reader never sees half a PNG
        fig.savefig(handle, format="png")
    plt.close(fig)
    return path


def final_and_best(state: RunState, tag: str, best: str | None) -> tuple[tuple | None, tuple | None]:
    """((step, value) of the last point, (step, value) of the best finite point) for a tag."""
    points = [(s, v) for s, v, _ in state.series.get(tag, [])]
    if not points:
        return None, None
    finite = [p for p in points if math.isfinite(p[1])]
    if best is None or not finite:
        return points[-1], None
    pick = min if best == "min" else max
    return points[-1], pick(finite, key=lambda p: p[1])


def build_report(run_dir: Path | str) -> tuple[list[Path], list[str]]:
    """Read the run, write the plots and report.md into `<run_dir>/dpo-launch/report/`: (the paths written, what
    could not be read and was skipped, one line per file; report.md lists it too)."""
    state = RunState(run_dir)
    state.poll(final=True)
    skipped = state.take_warnings()
    out_dir = state.run_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(state, out_dir)
    markdown = render_markdown(state, [p.name for p in plots], skipped)
    write_text_atomic(out_dir / "report.md", markdown)
    return plots + [out_dir / "report.md"], skipped


# --- report.md ---------------------------------------------------------------------------------------

def render_markdown(state: RunState, plots: list[str], skipped: list[str] | None = None) -> str:
    lines = [f"# dpo-launch report: {state.run_dir.name}", "", f"Run directory: `{state.run_dir}`", ""]
    lines += [f"- {line}" for line in _summary_lines(state)]
    lines += [f"- Skipped, could not be read: {problem}" for problem in skipped or []] + ["", "## Metrics", ""]
    lines += ["Best is the lowest loss and rejected reward, the highest chosen reward, margin and accuracy.", ""]
    lines += _metrics_table(state) + ["", "## Alerts", ""] + _alert_lines(state)
    lines += ["", "## Evaluation", ""] + evaluation_lines(state.run_dir) + ["", "## Plots", ""]
    lines += [f"![{name}]({name})" for name in plots] or ["(no metrics were logged)"]
    return "\n".join(lines) + "\n"


def _summary_lines(state: RunState) -> list[str]:
    total = state.max_steps
    status = state.end.summary if state.end else "not ended (still running, or it ended without recording how)"
    lines = [f"Status: {status}, last logged step {state.step}" + (f" of {total}" if total else "")]
    runtime = state.latest(FINISHED_TAG)
    if runtime is not None:
        lines[0] += f", train_runtime {runtime:.1f} s"
    return lines + [_loss_line(state), _reference_line(state)]


def _section(document: dict, key: str) -> dict:
    """A mapping of plan.json or runtime.json, {} when it is absent or not a mapping (a damaged file)."""
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def _loss_line(state: RunState) -> str:
    planned, ran = _section(state.plan, "loss"), _section(state.runtime, "loss")
    name = planned.get("name") or ran.get("name") or state.resolved_config.get("pref_loss") or "unknown"
    line = f"Loss: `{name}`"
    if planned.get("formula"):
        line += f": `{planned['formula']}`"
    parameters = {k: v for k, v in (planned.get("parameters") or {}).items() if v is not None}
    if parameters:
        line += " (" + ", ".join(f"{k}={v}" for k, v in parameters.items()) + ")"
    if ran.get("first_batch_loss") is not None:
        line += (f"; first-batch loss {_num(ran['first_batch_loss'])}, expected {_num(ran.get('expected'))}, "
                 f"self-test {ran.get('self_test', 'unknown')}")
    return line if planned or ran else line + " (no plan.json or runtime.json in the run directory)"


def _reference_line(state: RunState) -> str:
    planned, built = _section(state.plan, "reference"), _section(state.runtime, "reference")
    if not planned and not built:
        return "Reference model: unknown (no plan.json or runtime.json in the run directory)"
    line = f"Reference model: `{planned.get('kind') or built.get('kind')}`"
    if planned.get("description"):
        line += f": {planned['description']}"
    if built:
        line += f"; built by the worker: kind `{built.get('kind')}`, class `{built.get('class')}`"
        if built.get("parameters"):
            line += f", {built['parameters']:,} parameters"
    return line


def _metrics_table(state: RunState) -> list[str]:
    rows = ["| metric | train final | train best | eval final | eval best |", "| --- | --- | --- | --- | --- |"]
    for metric in METRICS:
        cells = []
        for kind in ("train", "eval"):
            final, best = final_and_best(state, f"{kind}/{metric.name}", metric.best)
            cells += [_point(final), _point(best) if metric.best else "n/a"]
        if any(c not in ("-", "n/a") for c in cells):
            rows.append(f"| {metric.name} | " + " | ".join(cells) + " |")
    return rows


def _alert_lines(state: RunState) -> list[str]:
    source = "raised live by the worker, from dpo-launch/alerts.jsonl" if state.has_worker_alerts else \
        "the rules applied to the event files with default thresholds: the run had no dpo-launch worker"
    if not state.alerts:
        return [f"None ({source})."]
    lines = [f"{len(state.alerts)} alert(s) ({source}):", ""]
    for alert in state.alerts:
        stopped = "; it stopped the run (--stop-on)" if alert.get("stopped_run") is True else ""
        lines.append(f"- **{alert.get('severity')}** `{alert.get('rule')}` at step {alert.get('step')}: "
                     f"{alert.get('message')} ({alert.get('hint')}){stopped}")
    return lines


def _point(point: tuple | None) -> str:
    return "-" if point is None else f"{_num(point[1])} (step {point[0]})"


def _num(value) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    if math.isfinite(value) and value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.3e}"
    return f"{value:.4f}" if math.isfinite(value) else str(value)
