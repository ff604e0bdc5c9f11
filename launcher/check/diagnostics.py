"""Diagnostics as data, and the text and JSON reporters that render them.

Every check in dpo-launch returns a list of `Diagnostic`; nothing prints or exits on its own.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TextIO

ERROR = "error"
WARNING = "warning"
NOTE = "note"

# Where a diagnostic about a `key=value` override on the command line is located.
OVERRIDES_FILE = "<command line>"

# Per file, how many diagnostics the text reporter lists before it summarises the rest.
DEFAULT_CAP_PER_FILE = 20


@dataclass(frozen=True)
class Diagnostic:
    """One problem, located as precisely as the input allows.

    `line`/`column` are 1-based positions in `file`; `record` is the 0-based index of a dataset
    record; `path` is the key path inside the config or record (e.g. `conversations[2].from`).
    """

    severity: str
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    record: int | None = None
    path: str | None = None
    hint: str | None = None

    def location(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        text = f"{self.location()}: {self.severity}[{self.code}]: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.75) -> str | None:
    """The closest choice to `word`, for a 'did you mean' hint, or None."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return matches[0] if matches else None


def suggestion_hint(word: str, choices: Iterable[str]) -> str | None:
    match = did_you_mean(word, choices)
    return f"did you mean '{match}'?" if match else None


def expected_one_of(choices: Sequence[object]) -> str:
    return ", ".join(str(c) for c in choices)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == ERROR for d in diagnostics)


def summarize(diagnostics: Sequence[Diagnostic]) -> dict:
    by_severity = Counter(d.severity for d in diagnostics)
    return {
        "errors": by_severity[ERROR],
        "warnings": by_severity[WARNING],
        "notes": by_severity[NOTE],
        "files": len({d.file for d in diagnostics if d.file}),
        "by_code": dict(sorted(Counter(d.code for d in diagnostics).items())),
    }


def render_json(diagnostics: Sequence[Diagnostic], stream: TextIO, extra_summary: dict | None = None,
                extra: dict | None = None) -> None:
    """`extra`: more top-level keys (e.g. "stats" from `validate --stats`)."""
    summary = summarize(diagnostics)
    summary.update(extra_summary or {})
    payload = {
        "ok": not has_errors(diagnostics),
        "diagnostics": [asdict(d) for d in diagnostics],
        "summary": summary,
        **(extra or {}),
    }
    json.dump(payload, stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def render_text(
    diagnostics: Sequence[Diagnostic],
    stream: TextIO,
    verbose: bool = False,
    cap_per_file: int = DEFAULT_CAP_PER_FILE,
    checked: str = "",
) -> None:
    """One line per diagnostic, capped per file unless verbose, then a one-line summary."""
    shown: Counter = Counter()
    hidden: dict[str, Counter] = {}
    for diagnostic in diagnostics:
        key = diagnostic.file or "<input>"
        if not verbose and shown[key] >= cap_per_file:
            hidden.setdefault(key, Counter())[diagnostic.code] += 1
            continue
        shown[key] += 1
        stream.write(diagnostic.render() + "\n")
    for file, codes in hidden.items():
        total = sum(codes.values())
        stream.write(f"{file}: {total} more diagnostics of {len(codes)} kinds; use --verbose to list them\n")
    stream.write(summary_line(diagnostics, checked) + "\n")


def summary_line(diagnostics: Sequence[Diagnostic], checked: str = "") -> str:
    """'✗ 3 errors, 0 warnings in config.yaml': the files named are those the errors are in (with their counts
    when there are several), else the file `checked`. Overrides are part of the config LLaMA-Factory reads, so
    their errors count as the checked config's."""
    counts = summarize(diagnostics)
    mark = "✗" if counts["errors"] else "✓"
    parts = [f"{counts['errors']} error{'s' * (counts['errors'] != 1)}",
             f"{counts['warnings']} warning{'s' * (counts['warnings'] != 1)}"]
    if counts["notes"]:
        parts.append(f"{counts['notes']} note{'s' * (counts['notes'] != 1)}")
    where = _files_with_errors(diagnostics, checked) or checked
    return f"{mark} {', '.join(parts)}" + (f" in {where}" if where else "")


def _files_with_errors(diagnostics: Sequence[Diagnostic], checked: str = "") -> str:
    """'data/prefs.jsonl', or 'config.yaml (2), data/prefs.jsonl (1)' when the errors are in several files."""
    by_file = Counter((checked if d.file == OVERRIDES_FILE and checked else d.file) or "<input>"
                      for d in diagnostics if d.severity == ERROR)
    if len(by_file) == 1:
        return next(iter(by_file))
    return ", ".join(f"{file} ({count})" for file, count in by_file.items())
