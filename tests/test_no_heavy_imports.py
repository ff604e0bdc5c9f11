"""`dpo-launch validate` and `plan` must stay fast: they never import the training stack, not even transitively."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, cli_env
from test_plan import write_workspace

HEAVY = ("torch", "transformers", "deepspeed", "trl", "peft", "tensorboard", "llamafactory", "accelerate",
         "datasets")

# Runs the real CLI entry point in-process, then lists the heavy modules it left in sys.modules.
PROBE = """
import json, runpy, sys
heavy = {heavy!r}
sys.argv = ["dpo-launch", *{args!r}]
try:
    runpy.run_module("launcher", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
with open({report!r}, "w") as f:
    json.dump({{"exit": code, "heavy": loaded}}, f)
"""


def probe(args: list[str], cwd, report, heavy=HEAVY) -> dict:
    code = PROBE.format(heavy=set(heavy), args=args, report=str(report))
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=cli_env(), capture_output=True, text=True,
                   timeout=300, check=False)
    return json.loads(report.read_text())


@pytest.mark.parametrize("args", [
    ["validate", "config.yaml"],
    ["plan", "config.yaml"],
    ["plan", "config.yaml", "--format", "json", "--nnodes", "2", "--nproc-per-node", "2"],
    ["train", "config.yaml", "--dry-run"],
], ids=["validate", "plan", "plan-json-multinode", "train-dry-run"])
def test_fast_commands_never_import_the_training_stack(tmp_path, args):
    workspace = write_workspace(tmp_path / "work")
    result = probe(args, workspace, tmp_path / "report.json")
    assert result == {"exit": 0, "heavy": []}


def test_the_probe_sees_what_the_cli_imports(tmp_path):
    # Guards the guard: argparse is always imported by the CLI, so the same probe must report it.
    assert probe(["--version"], REPO, tmp_path / "report.json", heavy=("argparse",)) == {
        "exit": 0, "heavy": ["argparse"]}
