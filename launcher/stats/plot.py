"""The token-length histogram PNG of `validate --stats` (matplotlib's Agg backend, no display needed).

Left: prompt, chosen and rejected (KTO: prompt, desirable, undesirable) lengths. Right: the length of the
longest sequence of each record (prompt + longest response) against `cutoff_len`, so what LF truncates is the
part right of the red line. Written atomically to <stats_dir>/<dataset>.lengths.png.
"""

from __future__ import annotations

import re
from pathlib import Path

from launcher.atomic import atomic_write

BINS = 50


def file_name(dataset: str) -> str:
    """A safe file name for a dataset name (names may hold '/' or spaces)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("._") + ".lengths.png"


def series(columns: dict, kto: bool) -> list[tuple[str, list[int]]]:
    if kto:
        flags = columns["desirable"]
        return [("prompt", columns["prompt"]),
                ("desirable", [r for r, d in zip(columns["response"], flags, strict=True) if d]),
                ("undesirable", [r for r, d in zip(columns["response"], flags, strict=True) if not d])]
    return [("prompt", columns["prompt"]), ("chosen", columns["chosen"]), ("rejected", columns["rejected"])]


def totals(columns: dict, kto: bool) -> list[int]:
    if kto:
        return [p + r for p, r in zip(columns["prompt"], columns["response"], strict=True)]
    return [p + max(c, r) for p, c, r in zip(columns["prompt"], columns["chosen"], columns["rejected"], strict=True)]


def bin_edges(values: list[int]) -> list[float]:
    """Shared edges: one bin per token length when the range is short, else BINS equal bins (so a series whose
    lengths are all equal still shows as a visible bar)."""
    low, high = min(values), max(values)
    if high - low < 2 * BINS:
        return [x - 0.5 for x in range(low, high + 2)]
    step = (high - low) / BINS
    return [low + i * step for i in range(BINS)] + [high + 0.5]


def write_histogram(dataset: str, columns: dict, stats: dict, stats_dir: Path) -> str | None:
    """Draw and save the figure; returns its path, or None when there is nothing to draw."""
    if not columns["index"]:
        return None
    import matplotlib
    import numpy

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kto = stats["kind"] == "kto"
    cutoff = stats["truncation"]["cutoff_len"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    parts = [(label, values) for label, values in series(columns, kto) if values]
    edges = bin_edges([v for _, values in parts for v in (min(values), max(values))])
    for label, values in parts:
        # An array, not the list: matplotlib walks a list element by element (seconds at 200k records).
        left.hist(numpy.asarray(values), bins=edges, alpha=0.5, label=label)
    left.set(title=f"{dataset}: token lengths", xlabel="tokens (with the template)", ylabel="records")
    left.legend()
    longest = totals(columns, kto)
    right.hist(numpy.asarray(longest), bins=bin_edges([min(longest), max(longest)]), color="gray")
    right.axvline(cutoff, color="red", linestyle="--", label=f"cutoff_len {cutoff}")
    cut = stats["truncation"]["truncated"]
    total = "prompt + response" if kto else "prompt + longer response"
    right.set(title=f"{total} ({cut} truncated)", xlabel="tokens", ylabel="records")
    right.legend()
    path = stats_dir / file_name(dataset)
    _save(figure, path)
    plt.close(figure)
    return str(path)


def _save(figure, path: Path) -> None:
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
