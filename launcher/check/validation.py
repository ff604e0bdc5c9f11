"""The validate pipeline as a library call: load -> schema -> rules -> datasets and records.

`plan` and `train` run the same pipeline first and refuse to go on when it finds errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from launcher.check.config import (
    ConfigLoadError,
    LoadedConfig,
    interpolation_warnings,
    load_config,
)
from launcher.check.config_schema import check_config_schema
from launcher.check.data.datasets import check_datasets
from launcher.check.diagnostics import ERROR, Diagnostic, has_errors
from launcher.check.rules.registry import check_rules


@dataclass
class ValidationResult:
    config: LoadedConfig | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    data_summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.config is not None and not has_errors(self.diagnostics)


def validate(config_path: str | Path, overrides: list[str] | tuple[str, ...] = (), check_data: bool = True,
             cwd: Path | None = None, launching: bool = False, jobs: int = 1) -> ValidationResult:
    """Run every check and return all diagnostics at once. Relative paths resolve from `cwd`, as in LF.
    `launching`: for `train` (and `plan`, which shows what train does): what `dpo-launch train` fixes by itself
    is a note saying what it does, not a warning about what `llamafactory-cli train` would do.
    `jobs`: processes a large JSON Lines file may be checked in (launcher.check.data.scan)."""
    try:
        loaded = load_config(config_path, overrides)
    except ConfigLoadError as exc:
        return ValidationResult(None, exc.diagnostics)
    cwd = Path.cwd() if cwd is None else cwd
    schema_diagnostics = check_config_schema(loaded)
    # A rule reading a value the schema already rejected would only repeat the problem in other words.
    rejected_keys = {d.path for d in schema_diagnostics if d.severity == ERROR and d.path}
    rule_diagnostics = [d for d in check_rules(loaded, cwd, launching) if d.path not in rejected_keys]
    config_diagnostics = sort_by_location(schema_diagnostics + interpolation_warnings(loaded) + rule_diagnostics)
    data_summary: dict = {}
    data_diagnostics: list[Diagnostic] = []
    if check_data:
        data_diagnostics, data_summary = check_datasets(loaded, cwd, jobs)
    return ValidationResult(loaded, config_diagnostics + data_diagnostics, data_summary)


def sort_by_location(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """The config file's diagnostics in line order, then those from the command line and elsewhere."""
    def key(d: Diagnostic) -> tuple:
        return (d.file is None, d.file or "", d.line is None, d.line or 0, d.column or 0)
    return sorted(diagnostics, key=key)
