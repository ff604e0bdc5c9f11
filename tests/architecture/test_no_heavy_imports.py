"""`dpo-launch validate`, `plan` and `schema` must stay fast: they never import the training stack, not even
transitively."""

from __future__ import annotations

import pytest

from support.cli import REPO, probe
from support.workspaces import write_workspace


@pytest.mark.parametrize("args", [
    ["validate", "config.yaml"],
    ["plan", "config.yaml"],
    ["plan", "config.yaml", "--format", "json", "--nnodes", "2", "--nproc-per-node", "2"],
    ["train", "config.yaml", "--dry-run"],
    ["schema", "--dataset", "prefs", "--config", "config.yaml"],
], ids=["validate", "plan", "plan-json-multinode", "train-dry-run", "schema"])
@pytest.mark.subprocess
def test_fast_commands_never_import_the_training_stack(tmp_path, args):
    workspace = write_workspace(tmp_path / "work")
    result = probe(args, workspace, tmp_path / "report.json")
    assert result == {"exit": 0, "heavy": []}


@pytest.mark.subprocess
def test_the_probe_sees_what_the_cli_imports(tmp_path):
    # Guards the guard: argparse is always imported by the CLI, so the same probe must report it.
    assert probe(["--version"], REPO, tmp_path / "report.json", heavy=("argparse",)) == {
        "exit": 0, "heavy": ["argparse"]}
