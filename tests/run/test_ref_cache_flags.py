"""`train --precompute-ref` on the launcher's side: which runs accept it, where the cache goes, what `plan` says;
and the worker's cache key (torch-free parts of launcher.worker.ref_cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.commands.train import resume_argv
from launcher.errors import UsageError
from launcher.layout import PRECOMPUTE_REF_ENV
from launcher.run.ref_cache import cache_env
from launcher.worker.ref_cache import cache_key, describe_difference, key_components

from support.cli import run_main


def test_the_default_cache_sits_next_to_the_output_dir_so_sibling_runs_share_it(tmp_path):
    a = cache_env({"stage": "dpo", "output_dir": "sweep/beta-0.1"}, tmp_path, True, None)
    b = cache_env({"stage": "dpo", "output_dir": "sweep/beta 0.3"}, tmp_path, True, None)
    assert a == b == {PRECOMPUTE_REF_ENV: str(tmp_path / "sweep" / ".dpo-launch-cache" / "ref-logps")}
    chosen = cache_env({"stage": "dpo", "output_dir": "out"}, tmp_path, True, "my cache")
    assert chosen == {PRECOMPUTE_REF_ENV: str(tmp_path / "my cache")}
    assert cache_env({"stage": "dpo"}, tmp_path, False, None) == {}


@pytest.mark.parametrize("values, why", [
    ({"stage": "dpo", "pref_loss": "orpo"}, "pref_loss orpo"),
    ({"stage": "dpo", "pref_loss": "simpo"}, "pref_loss simpo"),
    ({"stage": "kto"}, "stage kto"),
])
def test_a_run_without_a_reference_refuses_the_flag(tmp_path, values, why):
    with pytest.raises(UsageError, match=f"--precompute-ref: this run \\({why}\\) uses no reference model"):
        cache_env(values, tmp_path, True, None)


def test_the_cache_folder_flag_needs_the_flag(tmp_path):
    with pytest.raises(UsageError, match="--precompute-ref-cache goes with --precompute-ref"):
        cache_env({"stage": "dpo"}, tmp_path, False, "cache")


def test_train_dry_run_accepts_the_flag_and_refuses_it_for_simpo(planned_workspace):
    ok = run_main("train", "config.yaml", "--dry-run", "--precompute-ref", cwd=planned_workspace.root)
    assert ok.returncode == 0, ok.stderr
    refused = run_main("train", "config.yaml", "--dry-run", "--precompute-ref", "pref_loss=simpo",
                       cwd=planned_workspace.root)
    assert refused.returncode == 2
    assert "uses no reference model, so there is nothing to precompute" in refused.stderr


def test_plan_shows_the_memory_with_the_precomputed_reference(planned_workspace):
    result = run_main("plan", "config.yaml", cwd=planned_workspace.root)
    assert result.returncode == 0, result.stderr
    assert "With train --precompute-ref: " in result.stdout


def test_the_resume_command_keeps_the_flags():
    argv = resume_argv("c.yaml", [], {}, None, [], None, precompute=(True, "cache dir"))
    assert argv[-4:] == ["--precompute-ref", "--precompute-ref-cache", "cache dir", "--resume"]


def workspace(root: Path) -> dict:
    (root / "data").mkdir(parents=True)
    (root / "data" / "dataset_info.json").write_text('{"d": {"file_name": "d.jsonl", "ranking": true}}')
    (root / "data" / "d.jsonl").write_text('{"a": 1}\n')
    (root / "model").mkdir()
    (root / "model" / "model.safetensors").write_bytes(b"weights")
    return {"stage": "dpo", "model_name_or_path": str(root / "model"), "dataset": "d",
            "dataset_dir": str(root / "data"), "cutoff_len": 64, "template": "default", "pref_beta": 0.1}


def test_the_key_ignores_the_sweep_settings_and_follows_what_determines_the_values(tmp_path):
    cfg = workspace(tmp_path)
    key = cache_key(key_components(cfg, "cpu"))
    assert cache_key(key_components({**cfg, "pref_beta": 0.5, "learning_rate": 1e-6, "output_dir": "b"}, "cpu")) == key
    assert cache_key(key_components({**cfg, "cutoff_len": 32}, "cpu")) != key
    assert cache_key(key_components(cfg, "cuda")) != key
    (tmp_path / "data" / "d.jsonl").write_text('{"a": 2}\n')
    assert cache_key(key_components(cfg, "cpu")) != key


def test_the_difference_names_each_changed_component(tmp_path):
    cfg = workspace(tmp_path)
    old = key_components(cfg, "cpu")
    (tmp_path / "data" / "d.jsonl").write_text('{"a": 2}\n')
    new = key_components({**cfg, "cutoff_len": 32}, "cpu")
    assert describe_difference(old, new) == "cutoff_len: 64 -> 32; datasets changed"
