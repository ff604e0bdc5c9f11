"""Rule cases agree with LLaMA-Factory: tests/cases/rules/{valid,invalid}/<case>/config.yaml.

Every case holds `expected.txt`, the rules' whole output for it (every diagnostic, located, with its code). An
invalid case also holds `llamafactory.txt`, the first line of the error LLaMA-Factory 0.9.5's `get_train_args`
raises for it; one of the rules' errors must quote it. A valid case gets no rule error. One test runs
LLaMA-Factory itself over every case (in a subprocess: the CLI never imports it) to keep the corpus honest.
Machine-dependent settings (bf16, deepspeed) stay out of these cases: they are notes in validate by design.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.check.config import load_config
from launcher.check.diagnostics import ERROR, Diagnostic
from launcher.check.rules.registry import check_rules

from support.cli import CASES, cli_env

RULE_CASES = CASES / "rules"


def cases(kind: str) -> list[Path]:
    return sorted(path for path in (RULE_CASES / kind).iterdir() if path.is_dir())


def rule_output(case: Path, monkeypatch) -> list[Diagnostic]:
    monkeypatch.chdir(case)  # paths and positions are reported as the user in the case folder sees them
    return check_rules(load_config("config.yaml"), Path("."))


@pytest.mark.parametrize("case", cases("valid") + cases("invalid"), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_the_rules_report_exactly_the_recorded_diagnostics(case, monkeypatch):
    rendered = "".join(d.render() + "\n" for d in rule_output(case, monkeypatch))
    assert rendered == (case / "expected.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", cases("valid"), ids=lambda path: path.name)
def test_a_config_llamafactory_accepts_gets_no_rule_error(case, monkeypatch):
    assert [d.render() for d in rule_output(case, monkeypatch) if d.severity == ERROR] == []


@pytest.mark.parametrize("case", cases("invalid"), ids=lambda path: path.name)
def test_a_config_llamafactory_rejects_gets_a_rule_error_quoting_its_message(case, monkeypatch):
    lf_message = (case / "llamafactory.txt").read_text(encoding="utf-8").strip()
    errors = [d for d in rule_output(case, monkeypatch) if d.severity == ERROR]
    quoting = [d for d in errors if f'stops with "{lf_message}"' in (d.hint or "") + d.message]  # LF or transformers
    assert len(quoting) >= 1, [d.render() for d in errors]


# Runs in a fresh interpreter: parse each case as `llamafactory-cli train` would, print what happened.
LF_PROBE = """
import json, os, sys, yaml
os.environ["DISABLE_VERSION_CHECK"] = "1"
from llamafactory.hparams import get_train_args
results = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as handle:
        args = yaml.safe_load(handle)
    try:
        get_train_args(args)
        results[path] = None
    except Exception as exc:
        results[path] = str(exc).splitlines()[0]
print("RESULTS " + json.dumps(results))
"""


@pytest.mark.slow  # imports LLaMA-Factory (in a subprocess)
def test_llamafactory_itself_accepts_the_valid_cases_and_rejects_the_invalid_ones_with_the_recorded_message(tmp_path):
    configs = [case / "config.yaml" for case in cases("valid") + cases("invalid")]

    probe = subprocess.run([sys.executable, "-c", LF_PROBE, *map(str, configs)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600, env=cli_env())
    marker = next(line for line in probe.stdout.splitlines() if line.startswith("RESULTS "))
    results = json.loads(marker.removeprefix("RESULTS "))

    expected = {str(config): _recorded(config.parent) for config in configs}
    assert results == expected


def _recorded(case: Path) -> str | None:
    message = case / "llamafactory.txt"
    return message.read_text(encoding="utf-8").strip() if message.is_file() else None
