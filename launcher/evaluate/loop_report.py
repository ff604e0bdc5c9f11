"""The loop's table (terminal and `<output_dir>/loop.md`) and plot (`loop.png`: held-out accuracy and margin,
and the win rate with its Wilson 95% interval, per round). matplotlib is imported inside the plotting function."""

from __future__ import annotations

from pathlib import Path

from launcher.atomic import atomic_write, write_text_atomic
from launcher.evaluate.loop_spec import LoopSpec

COLUMNS = ("round", "kind", "pairs", "steps", "accuracy", "margin", "win rate [95%]", "length (policy/base)",
           "gate")


def rows(spec: LoopSpec, data: dict) -> list[list[str]]:
    out = []
    for r in spec.rounds:
        record = data["rounds"].get(str(r.index))
        if record is None:
            out.append([f"{r.index} {r.name}", "online" if r.online else "iterative"] + ["-"] * 6 + ["not run"])
            continue
        steps = record["steps"]
        evaluation = steps.get("eval") or {}
        metrics = evaluation.get("metrics") or {}
        counts, lengths = evaluation.get("counts") or {}, evaluation.get("lengths") or {}
        gate = record.get("gate")
        pairs = steps.get("pairs", {}).get("pairs") if r.online else r.changes.get("dataset", "(config)")
        out.append([f"{r.index} {r.name}", "online" if r.online else "iterative", str(pairs if pairs is not None
                                                                                     else "-"),
                    str(steps.get("train", {}).get("step", "-")), _num(metrics.get("accuracy")),
                    _num(metrics.get("margin")), _win_rate(counts), _lengths(lengths),
                    "-" if gate is None else ("passed" if gate["passed"] else "FAILED") if gate["expression"]
                    else "none" if "eval" in steps else "-"])
    return out


def _num(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _win_rate(counts: dict) -> str:
    if not counts or counts.get("win_rate") is None:
        return "-"
    return f"{counts['win_rate']:.3f} [{counts['wilson95_low']:.3f}, {counts['wilson95_high']:.3f}]"


def _lengths(lengths: dict) -> str:
    if not lengths or lengths.get("policy") is None:
        return "-"
    return f"{lengths['policy']:.1f}/{lengths['baseline']:.1f}"


def table_lines(spec: LoopSpec, data: dict) -> list[str]:
    table = [list(COLUMNS)] + rows(spec, data)
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in table]


def markdown(spec: LoopSpec, data: dict) -> str:
    lines = [f"# dpo-launch loop: {spec.file}", "", f"Status: {data.get('status')}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(spec, data)]
    lines += ["", "Win rate: each round's model against the model it started from (ties count half), judged; the "
              "gate compares the lower bound of the Wilson 95% interval.", "", "![rounds](loop.png)"]
    for r in spec.rounds:
        gate = (data["rounds"].get(str(r.index)) or {}).get("gate")
        if gate and gate["expression"]:
            lines.append(f"- round {r.index} gate `{gate['expression']}`: " + "; ".join(gate["checks"]))
    return "\n".join(lines) + "\n"


def write_report(spec: LoopSpec, data: dict) -> list[Path]:
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    md = spec.output_dir / "loop.md"
    write_text_atomic(md, markdown(spec, data))
    return [md, plot(spec, data, spec.output_dir / "loop.png")]


def plot(spec: LoopSpec, data: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    indexes, accuracy, margin, rate, low, high = [], [], [], [], [], []
    for r in spec.rounds:
        evaluation = ((data["rounds"].get(str(r.index)) or {}).get("steps") or {}).get("eval")
        if not evaluation:
            continue
        metrics, counts = evaluation.get("metrics") or {}, evaluation.get("counts") or {}
        indexes.append(r.index)
        accuracy.append(metrics.get("accuracy"))
        margin.append(metrics.get("margin"))
        rate.append(counts.get("win_rate"))
        low.append(counts.get("wilson95_low"))
        high.append(counts.get("wilson95_high"))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    _series(left, indexes, accuracy, "held-out reward accuracy", "tab:blue", "o-")
    _series(left.twinx(), indexes, margin, "held-out reward margin", "tab:orange", "s--")
    left.set_title("Held-out preference metrics")
    known = [(i, v, lo, hi) for i, v, lo, hi in zip(indexes, rate, low, high, strict=True) if v is not None]
    if known:
        right.errorbar([k[0] for k in known], [k[1] for k in known],
                       yerr=[[k[1] - k[2] for k in known], [k[3] - k[1] for k in known]], fmt="o-", capsize=4,
                       label="win rate (Wilson 95%)")
        right.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        right.legend(loc="best")
    right.set_ylim(0, 1)
    right.set_title("Win rate against the round's starting model")
    for axes in (left, right):
        axes.set_xlabel("round")
        axes.set_xticks([r.index for r in spec.rounds])
    figure.tight_layout()
    with atomic_write(path, "wb", encoding=None) as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
    return path


def _series(axes, xs, ys, label, color, style) -> None:
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if points:
        axes.plot([p[0] for p in points], [p[1] for p in points], style, color=color, label=label)
        axes.set_ylabel(label, color=color)
