"""Nothing the user owns is lost: validate, plan, train and convert (without --register) leave the config,
dataset_info.json and the data files byte for byte as they were, and a previous run in output_dir is touched
only when `train` is given --resume or --overwrite."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from test_train import workspace

from support.cli import CASES, run_cli, run_main


def snapshot(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file under `paths` (files or directories), by path."""
    files = [q for p in paths for q in ([p] if p.is_file() else sorted(p.rglob("*"))) if q.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def used_workspace(tmp_path_factory, tiny_model_dir):
    """A workspace with a convert input, snapshotted, then put through every command that reads it."""
    ws = workspace(tmp_path_factory.mktemp("owned") / "my work", tiny_model_dir, max_steps=2, save_steps=2)
    shutil.copyfile(CASES / "convert" / "trl-standard" / "input.jsonl", ws.root / "pairs.jsonl")
    owned = [ws.config, ws.root / "data", ws.root / "pairs.jsonl"]
    before = snapshot(owned)
    results = {name: run_cli(*args, cwd=ws.root) for name, args in {
        "validate": ("validate", ws.config),
        "plan": ("plan", ws.config),
        "train": ("train", ws.config, "--no-monitor"),
        "convert": ("convert", "pairs.jsonl", "--out", "converted.jsonl"),
    }.items()}
    return ws, owned, before, results


@pytest.mark.slow
def test_every_command_that_reads_the_users_files_succeeds(used_workspace):
    _, _, _, results = used_workspace
    assert {name: r.returncode for name, r in results.items()} == {"validate": 0, "plan": 0, "train": 0,
                                                                  "convert": 0}


@pytest.mark.slow
def test_config_dataset_info_and_data_files_are_byte_identical_afterwards(used_workspace):
    ws, owned, before, _ = used_workspace
    assert snapshot(owned) == before
    assert (ws.root / "data" / "dataset_info.json").read_bytes() == \
        (Path(__file__).resolve().parents[2] / "data" / "dataset_info.json").read_bytes()
    assert sorted(p.name for p in (ws.root / "data").iterdir()) == ["dataset_info.json", "demo_dpo.jsonl",
                                                                      "demo_kto.jsonl"]


@pytest.mark.slow  # reads the run the used_workspace fixture trains
@pytest.mark.parametrize("args", [
    ("train",), ("train", "--dry-run"), ("train", "--resume", "--dry-run"), ("train", "--overwrite", "--dry-run"),
    ("plan",), ("validate",),
], ids=" ".join)
def test_a_previous_run_in_output_dir_is_untouched_without_resume_or_overwrite(used_workspace, args):
    ws, _, _, results = used_workspace
    assert results["train"].returncode == 0
    before = snapshot([ws.out])
    result = run_main(args[0], ws.config, *args[1:], cwd=ws.root)
    refused = args in (("train",), ("train", "--dry-run"))  # the output_dir guard runs before --dry-run prints
    assert result.returncode == (1 if refused else 0), result.stdout[-2000:] + result.stderr[-2000:]
    assert snapshot([ws.out]) == before
