"""Rule cases agree with LLaMA-Factory: tests/cases/rules/{valid,invalid}/<case>/config.yaml.

An invalid case holds `llamafactory.txt`, the first line of the error LLaMA-Factory 0.9.5's `get_train_args`
raises for it; `validate`'s rules must report an error that quotes it. A valid case gets no rule error. One test
runs LLaMA-Factory itself over every case (in a subprocess: the CLI never imports it) to keep the corpus honest.
Machine-dependent settings (bf16, deepspeed) stay out of these cases: they are notes in validate by design.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.check.config import load_config
from launcher.check.diagnostics import ERROR
from launcher.check.rules.registry import check_rules

from support.cli import CASES, cli_env

RULE_CASES = CASES / "rules"


def cases(kind: str) -> list[Path]:
    return sorted(path for path in (RULE_CASES / kind).iterdir() if path.is_dir())


def rule_errors(case: Path) -> list[str]:
    found = check_rules(load_config(case / "config.yaml"), case)
    return [f"{d.message} ({d.hint})" for d in found if d.severity == ERROR]


@pytest.mark.parametrize("case", cases("valid"), ids=lambda path: path.name)
def test_a_config_llamafactory_accepts_gets_no_rule_error(case):
    assert rule_errors(case) == []


@pytest.mark.parametrize("case", cases("invalid"), ids=lambda path: path.name)
def test_a_config_llamafactory_rejects_gets_a_rule_error_quoting_its_message(case):
    lf_message = (case / "llamafactory.txt").read_text(encoding="utf-8").strip()

    errors = rule_errors(case)

    assert [error for error in errors if lf_message in error], errors


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


@pytest.mark.subprocess
def test_llamafactory_itself_accepts_the_valid_cases_and_rejects_the_invalid_ones_with_the_recorded_message(tmp_path):
    pytest.importorskip("llamafactory")
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
