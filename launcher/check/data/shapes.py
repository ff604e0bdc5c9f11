"""Which record problems one file shares: the tally the scan keeps of each problem's `shape` (see
verdicts.Problem), and the rule that makes a shape file-wide.

A shape is file-wide when at least half of the file's records have it (and at least two, unless the file holds
one record): a column mapped under a name the records do not use, the guide's string answers, role names the
entry does not declare, text that went through a chat template. filewide.py then reports it once, with the
count, the first locations and the fix, instead of once per record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

FIRST_SHOWN = 3  # locations quoted in a file-wide diagnostic
KEYS_FROM = 100  # records whose keys are collected to suggest a column name
# Shapes also counted under a combined name: every role name or message key the tags fix covers, every marker.
COMBINED = {"role": "tags", "keys": "tags", "templated": "templated"}


@dataclass
class ShapeSeen:
    """One shape's occurrences in one file."""

    records: int = 0
    last: int = -1
    first: list[tuple[int, int | None]] = field(default_factory=list)  # (record index, line)
    verdicts: Counter = field(default_factory=Counter)
    positions: list[int] = field(default_factory=list)  # indexes of its diagnostics in the file's list


class ShapeTally:
    """The shapes of one file's problems, filled record by record during the scan."""

    def __init__(self) -> None:
        self.shapes: dict[str, ShapeSeen] = {}
        self.explained = 0  # records that failed the fast path
        self.record_keys: Counter = Counter()  # the keys of records missing a column (the first KEYS_FROM)
        self._keyed = 0

    def note(self, shape: str, index: int, line: int | None, verdict: str, position: int) -> None:
        """A problem of record `index` with this shape; its diagnostic is number `position` of the file."""
        family = shape.split(":", 1)[0]
        for key in (shape, COMBINED[family]) if family in COMBINED and COMBINED[family] != shape else (shape,):
            seen = self.shapes.setdefault(key, ShapeSeen())
            seen.positions.append(position)
            if seen.last != index:
                seen.last = index
                seen.records += 1
                seen.verdicts[verdict] += 1
                if len(seen.first) < FIRST_SHOWN:
                    seen.first.append((index, line))

    def note_keys(self, record: Iterable) -> None:
        if self._keyed < KEYS_FROM:
            self._keyed += 1
            self.record_keys.update(key for key in record if isinstance(key, str))

    def file_wide(self, shape: str, records: int) -> ShapeSeen | None:
        """The shape's tally when at least half of the file's `records` (and two, or the only one) have it."""
        seen = self.shapes.get(shape)
        if seen is None or seen.records * 2 < records or (seen.records < 2 and records != 1):
            return None
        return seen


def locations(seen: ShapeSeen) -> str:
    """'record 0 (line 1), record 4 (line 5), ...' for the first records with a shape."""
    shown = [f"record {index}" + (f" (line {line})" if line is not None else "") for index, line in seen.first]
    return ", ".join(shown) + (", ..." if seen.records > len(seen.first) else "")


def consequence(seen: ShapeSeen) -> str:
    """What LLaMA-Factory does with the records that have the shape, from their verdicts."""
    words = {"dropped": "drops", "crash": "crashes on", "kept": "trains on"}
    parts = [(words[verdict], count) for verdict, count in sorted(seen.verdicts.items()) if count]
    if len(parts) == 1:
        return f"LLaMA-Factory {parts[0][0]} {'it' if seen.records == 1 else 'them'}"
    return "LLaMA-Factory " + " and ".join(f"{word} {count}" for word, count in parts)
