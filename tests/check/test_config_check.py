"""`dpo-launch validate --no-data` on config case folders: the whole output is compared with expected.txt.

Each folder under tests/cases/config/{valid,invalid}/ holds `config.yaml` (or `config.json`), the exact
expected stdout in `expected.txt`, and optionally `args`: the arguments after `validate`, one per line
(default: the config file). `--no-data` is always added; cases check the config, not datasets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import CASES, run_main

CONFIG_CASES = CASES / "config"
DIAGNOSTIC_KEYS = {"severity", "code", "file", "line", "column", "record", "path", "message", "hint"}


def cases(kind: str) -> list[Path]:
    return sorted(path for path in (CONFIG_CASES / kind).iterdir() if path.is_dir())


def case_args(case: Path) -> list[str]:
    args_file = case / "args"
    if args_file.is_file():
        return args_file.read_text(encoding="utf-8").splitlines()
    return [next(path.name for path in sorted(case.iterdir()) if path.stem == "config")]


def run_case(case: Path, *extra: str):
    return run_main("validate", *case_args(case), "--no-data", *extra, cwd=case)


@pytest.mark.parametrize("case", cases("valid"), ids=lambda path: path.name)
def test_valid_config_case_passes_with_exactly_the_expected_output(case):
    result = run_case(case)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (case / "expected.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", cases("invalid"), ids=lambda path: path.name)
def test_invalid_config_case_fails_with_exactly_the_expected_diagnostics(case):
    result = run_case(case)

    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == (case / "expected.txt").read_text(encoding="utf-8")


def test_json_format_has_the_documented_shape():
    result = run_case(CONFIG_CASES / "invalid" / "override", "--format", "json")
    payload = json.loads(result.stdout)

    assert result.returncode == 1
    assert set(payload) == {"ok", "diagnostics", "summary"}
    assert payload["ok"] is False
    assert all(set(diagnostic) == DIAGNOSTIC_KEYS for diagnostic in payload["diagnostics"])
    assert payload["summary"]["errors"] == sum(d["severity"] == "error" for d in payload["diagnostics"])
    assert [d for d in payload["diagnostics"] if d["file"] == "<command line>"][-1] == {
        "severity": "error", "code": "unknown-key", "file": "<command line>", "line": None, "column": None,
        "record": None, "path": "pref_lose", "message": "'pref_lose' is not a key of a dpo config",
        "hint": "did you mean 'pref_loss'?",
    }


def test_json_format_of_a_valid_config_reports_ok_and_no_diagnostics():
    result = run_case(CONFIG_CASES / "valid" / "dpo-lora", "--format", "json")
    payload = json.loads(result.stdout)

    assert result.returncode == 0
    assert payload["ok"] is True
    assert [d for d in payload["diagnostics"] if d["severity"] == "error"] == []


# ------------------------------------------------------------------ several configs (as pre-commit passes them)

def test_several_configs_are_validated_each_with_its_summary_and_any_error_fails(tmp_path):
    from support.cli import run_main

    good = "stage: dpo\ndo_train: true\ndataset: prefs\nmodel_name_or_path: Qwen/Qwen3-0.6B\nreport_to: tensorboard\n"
    (tmp_path / "a.yaml").write_text(good)
    (tmp_path / "b.yaml").write_text(good + "pref_loss: sigmod\n")
    done = run_main("validate", "a.yaml", "b.yaml", "pref_beta=0.2", "--no-data", cwd=tmp_path)
    summaries = [line for line in done.stdout.splitlines() if line[:1] in "✓✗"]
    assert (done.returncode, summaries) == (1, ["✓ 0 errors, 0 warnings, 1 note in a.yaml",
                                                "✗ 1 error, 0 warnings, 1 note in b.yaml"])
    assert run_main("validate", "a.yaml", "a.yaml", "--no-data", cwd=tmp_path).returncode == 0


def test_several_configs_take_neither_json_nor_stats(tmp_path):
    from support.cli import run_main

    done = run_main("validate", "a.yaml", "b.yaml", "--format", "json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "dpo-launch: error: several configs are validated in text only: "
                                                 "--stats and --format json take one config\n")
