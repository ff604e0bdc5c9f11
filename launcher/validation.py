"""The validate pipeline as a library call: load -> schema -> rules -> datasets and records.

`plan` and `train` run the same pipeline first and refuse to go on when it finds errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from launcher.config import ConfigLoadError, LoadedConfig, interpolation_warnings, load_config
from launcher.diagnostics import Diagnostic, has_errors


@dataclass
class ValidationResult:
    config: LoadedConfig | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    data_summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.config is not None and not has_errors(self.diagnostics)


def validate(config_path: str | Path, overrides: list[str] | tuple[str, ...] = (), check_data: bool = True,
             cwd: Path | None = None) -> ValidationResult:
    """Run every check and return all diagnostics at once. Relative paths resolve from `cwd`, as in LF."""
    from launcher.config_check import check_config_schema
    from launcher.dataset import check_datasets
    from launcher.rules import check_rules

    try:
        loaded = load_config(config_path, overrides)
    except ConfigLoadError as exc:
        return ValidationResult(None, exc.diagnostics)
    cwd = Path.cwd() if cwd is None else cwd
    diagnostics = check_config_schema(loaded) + interpolation_warnings(loaded) + check_rules(loaded, cwd)
    data_summary: dict = {}
    if check_data:
        data_diagnostics, data_summary = check_datasets(loaded, cwd)
        diagnostics += data_diagnostics
    return ValidationResult(loaded, diagnostics, data_summary)
