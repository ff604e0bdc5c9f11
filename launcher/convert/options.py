"""What `convert` does to each record before and after its format's reader: custom column names (`--map
prompt=question,chosen=better_response`) renamed to the names the readers know, and for multi-objective data
(`"dimensions": {"helpfulness": {"chosen": 4, "rejected": 2}, ...}`) a weighted preference (`--weights
helpfulness=1,honesty=0.5`, `--min-margin M`) that drops the pairs it does not prefer: the weighted score of
chosen minus rejected must be above zero (else the preference flips or ties) and at least M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from launcher.check.diagnostics import expected_one_of, suggestion_hint
from launcher.convert.messages import Unconvertible, type_name

# The keys the readers of formats.py look for: the targets `--map` may name.
FIELDS = ("prompt", "chosen", "rejected", "system", "messages", "conversations", "instruction", "input", "output",
          "history", "preferred_output", "non_preferred_output", "rejected_message", "rejected_response",
          "dimensions")
DIMENSIONS = "dimensions"
# Why a pair the weights do not prefer is dropped: the code counted in the summary.
FLIPPED, TIED, BELOW_MARGIN = "flipped", "tied", "below margin"


@dataclass(frozen=True)
class ReadOptions:
    columns: dict[str, str] = field(default_factory=dict)  # reader's name -> the input's column
    weights: dict[str, float] = field(default_factory=dict)  # dimension -> weight (others weigh 0)
    min_margin: float = 0.0


def parse_column_map(text: str) -> dict[str, str]:
    """`prompt=question,chosen=better` -> {"prompt": "question", "chosen": "better"}; ValueError says why not."""
    columns: dict[str, str] = {}
    for item in _items(text, "--map", "prompt=question"):
        target, source = item
        if target not in FIELDS:
            hint = suggestion_hint(target, FIELDS)
            raise ValueError(f"--map: '{target}' is not a field the formats read; expected one of "
                             f"{expected_one_of(FIELDS)}" + (f" ({hint})" if hint else ""))
        if target in columns:
            raise ValueError(f"--map: '{target}' is mapped twice")
        columns[target] = source
    return columns


def parse_weights(text: str) -> dict[str, float]:
    """`helpfulness=1,honesty=0.5` -> {"helpfulness": 1.0, "honesty": 0.5}; ValueError says why not."""
    weights: dict[str, float] = {}
    for name, value in _items(text, "--weights", "helpfulness=1"):
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"--weights: the weight of '{name}' must be a number but got '{value}'") from None
        if not math.isfinite(weight):
            raise ValueError(f"--weights: the weight of '{name}' must be finite but got '{value}'")
        weights[name] = weight
    return weights


def _items(text: str, flag: str, example: str) -> list[tuple[str, str]]:
    items = []
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{flag}: expected NAME=VALUE items separated by commas (e.g. {example}) but got "
                             f"'{item.strip()}'")
        items.append((name.strip(), value.strip()))
    return items


def renamed(record: dict, columns: dict[str, str]) -> dict:
    """The record with each mapped input column under the reader's name (a column not in the record is left out)."""
    if not columns:
        return record
    sources = set(columns.values())
    out = {key: value for key, value in record.items() if key not in sources}
    out.update({target: record[source] for target, source in columns.items() if source in record})
    return out


def first_record_problem(record: dict, options: ReadOptions) -> str | None:
    """Why the options cannot apply to the first record (a mapped column or a weighted dimension it lacks)."""
    for target, source in options.columns.items():
        if source not in record:
            hint = suggestion_hint(source, [str(key) for key in record])
            return f"--map {target}={source}: the record has no '{source}' (its keys: " \
                   f"{', '.join(sorted(map(str, record)))})" + (f"; {hint}" if hint else "")
    if options.weights:
        dimensions = renamed(record, options.columns).get(DIMENSIONS)
        if not isinstance(dimensions, dict):
            return f"--weights needs a '{DIMENSIONS}' object in each record, and the record has none"
        for name in options.weights:
            if name not in dimensions:
                hint = suggestion_hint(name, [str(key) for key in dimensions])
                return f"--weights {name}: the record's {DIMENSIONS} have no '{name}' (they have " \
                       f"{', '.join(sorted(map(str, dimensions)))})" + (f"; {hint}" if hint else "")
    return None


def preference(record: dict, options: ReadOptions) -> str | None:
    """None to keep the pair; FLIPPED, TIED or BELOW_MARGIN to drop it. Unconvertible for unreadable scores."""
    if not options.weights:
        return None
    margin = weighted_margin(record, options.weights)
    if math.isclose(margin, 0.0, abs_tol=1e-9):
        return TIED
    if margin < 0:
        return FLIPPED
    return BELOW_MARGIN if margin < options.min_margin else None


def weighted_margin(record: dict, weights: dict[str, float]) -> float:
    """Σ weight · (chosen score − rejected score) over the weighted dimensions."""
    dimensions = record.get(DIMENSIONS)
    if not isinstance(dimensions, dict):
        raise Unconvertible("missing-field", f"no '{DIMENSIONS}' object (--weights needs one)")
    total = 0.0
    for name, weight in weights.items():
        scores = dimensions.get(name)
        if not isinstance(scores, dict):
            raise Unconvertible("missing-field", f"{DIMENSIONS} has no '{name}' object with chosen/rejected scores")
        total += weight * (_score(scores, "chosen", name) - _score(scores, "rejected", name))
    return total


def _score(scores: dict, side: str, name: str) -> float:
    value = scores.get(side)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        shown = "missing" if value is None else type_name(value)
        raise Unconvertible("wrong-type", f"{DIMENSIONS}.{name}.{side} must be a number but is {shown}")
    return float(value)
