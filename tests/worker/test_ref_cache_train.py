"""`--precompute-ref`: training on cached reference log-probs logs what training with the reference logs.

Real LLaMA-Factory training of the tiny model on CPU in fp32: each configuration trains once without the cache and
once with it, and every step's loss, gradient norm and rewards, and the trained weights (every parameter: with SGD
at learning rate 1 they are the sum of every step's gradients) agree to 1e-6 (the pass batches pairs differently
from the training sampler, so the reference's sums can differ in the last float32 bits, ~1e-7 here). Each of
sigmoid, ipo, hinge and kto_pair runs with full fine-tuning and LoRA in one process, and on two ranks (plain data
parallel, ZeRO-2 or ZeRO-3).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import REPO, run_cli
from support.training import Workspace, build_tiny_model_once, make_workspace, run_worker, training_env

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

LOGGED = ("loss", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
# Plain SGD at learning rate 1: the weights after N steps are the start minus the sum of the N (clipped) gradients,
# so weights equal to 1e-6 are gradients equal to 1e-6 (Adam's update hides a gradient's scale: with it, a reference
# 1e-3 off in every pair moved the weights by 2e-6; with this, by 1.1e-5).
EXACT = {"optim": "sgd", "learning_rate": 1.0}
LORA = {"finetuning_type": "lora", "lora_target": "all"}
EVAL = {"val_size": 0.1, "eval_strategy": "steps", "eval_steps": 5, "per_device_eval_batch_size": 3}
CASES = {
    "full-sigmoid": {"pref_loss": "sigmoid"},
    "full-sigmoid-with-eval": {"pref_loss": "sigmoid", **EVAL},
    "full-ipo": {"pref_loss": "ipo"},
    "full-hinge": {"pref_loss": "hinge"},
    "full-kto_pair": {"pref_loss": "kto_pair"},
    "lora-sigmoid": {"pref_loss": "sigmoid", **LORA},
    "lora-ipo": {"pref_loss": "ipo", **LORA},
    "lora-hinge": {"pref_loss": "hinge", **LORA},
    "lora-kto_pair": {"pref_loss": "kto_pair", **LORA},
}


def cached_env(cache: Path) -> dict[str, str]:
    return training_env(DPO_LAUNCH_PRECOMPUTE_REF=str(cache))


def logged(ws: Workspace) -> list[dict[str, float]]:
    return [{key: entry[key] for key in LOGGED} for entry in ws.log_history() if "loss" in entry]


def evaluated(ws: Workspace) -> list[dict[str, float]]:
    evaluated_keys = [key for key in LOGGED if key != "grad_norm"]  # evaluation has no gradient
    return [{key: entry[f"eval_{key}"] for key in evaluated_keys} for entry in ws.log_history() if "eval_loss" in entry]


def trained(ws: Workspace, env: dict[str, str] | None = None):
    result = run_worker(ws, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def assert_same_steps(without: list[dict[str, float]], with_cache: list[dict[str, float]]) -> None:
    assert len(with_cache) == len(without) >= 5
    for step, (expected, observed) in enumerate(zip(without, with_cache, strict=True)):
        for key in LOGGED:
            assert observed[key] == pytest.approx(expected[key], abs=1e-6, rel=1e-6), (step, key)


def assert_same_weights(without: Path, with_cache: Path) -> None:
    """The weights each run saved at its end (the full model or the adapter), parameter by parameter: equal
    weights after the same steps from the same start mean equal gradients at every step."""
    from safetensors.numpy import load_file

    (saved,) = [path.name for path in without.glob("*.safetensors")]
    expected, observed = load_file(without / saved), load_file(with_cache / saved)
    assert sorted(observed) == sorted(expected) and expected
    for name, tensor in expected.items():
        assert abs(observed[name].astype("float64") - tensor).max() <= 1e-6, name
    # and training moved them, so that a gradient that differed would show: LoRA's B matrices start at zero,
    # the full model's weights at the tiny model's
    if saved.startswith("adapter"):
        moved = max(abs(tensor).max() for name, tensor in expected.items() if "lora_B" in name)
    else:
        start = load_file(build_tiny_model_once() / saved)
        moved = max(abs(tensor.astype("float64") - start[name]).max() for name, tensor in expected.items())
    assert moved > 1e-4


@pytest.mark.parametrize("case", list(CASES))
def test_cached_reference_trains_like_the_reference(tmp_path, tiny_model_dir, case):
    plain = make_workspace(tmp_path / "plain", tiny_model_dir, **EXACT, **CASES[case])
    cached = make_workspace(tmp_path / "cached", tiny_model_dir, **EXACT, **CASES[case])
    trained(plain)
    result = trained(cached, cached_env(tmp_path / "cache"))
    assert_same_steps(logged(plain), logged(cached))
    assert_same_weights(plain.out, cached.out)
    if "eval" in case:  # the eval pairs come from the cache too
        assert len(evaluated(plain)) == len(evaluated(cached)) == 1
        assert evaluated(cached)[0] == pytest.approx(evaluated(plain)[0], abs=1e-6, rel=1e-6)
    assert "reference log-probs: computing them (no cache yet" in result.stderr + result.stdout
    # the pass built the reference; training built none (LF logs each reference it creates)
    assert (result.stdout + result.stderr).count("Created reference model") == (0 if "lora" in case else 1)
    assert cached.runtime()["reference"]["kind"] == "precomputed"
    assert cached.runtime()["loss"]["self_test"] == "passed"  # the self-test ran on the cached values


def test_a_matching_cache_skips_the_pass_and_a_changed_cutoff_len_recomputes_saying_why(tmp_path, tiny_model_dir):
    cache = tmp_path / "cache"
    first = make_workspace(tmp_path / "first", tiny_model_dir)
    trained(first, cached_env(cache))
    sweep = make_workspace(tmp_path / "sweep", tiny_model_dir, pref_beta=0.3)  # another run of a pref_beta sweep
    hit = trained(sweep, cached_env(cache))
    output = hit.stdout + hit.stderr
    assert "reference log-probs: cache hit" in output and "skipping the pass" in output
    assert "Created reference model" not in output
    shorter = make_workspace(tmp_path / "shorter", tiny_model_dir, cutoff_len=32)
    miss = trained(shorter, cached_env(cache))
    assert "differs in cutoff_len: 64 -> 32" in miss.stdout + miss.stderr
    assert len([entry for entry in cache.iterdir() if (entry / "ref_logps.json").is_file()]) == 2


def test_a_pair_missing_from_the_cache_is_an_error_naming_the_cache(tmp_path, tiny_model_dir):
    cache = tmp_path / "cache"
    ws = make_workspace(tmp_path / "ws", tiny_model_dir)
    trained(ws, cached_env(cache))
    (values,) = cache.glob("*/ref_logps.json")
    content = json.loads(values.read_text(encoding="utf-8"))
    content["pairs"] = dict(list(content["pairs"].items())[:3])
    values.write_text(json.dumps(content), encoding="utf-8")
    again = make_workspace(tmp_path / "again", tiny_model_dir)
    result = run_worker(again, env=cached_env(cache))
    assert result.returncode == 1
    assert f"the reference log-probs cache {values} has no entry for" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_flag_shares_one_cache_across_sibling_output_dirs_with_two_shuffled_ranks(tmp_path, tiny_model_dir):
    """`dpo-launch train --precompute-ref`, 2 ranks (each rank's sampler shuffles): the same steps as without."""
    plain = make_workspace(tmp_path / "plain", tiny_model_dir, output_dir="runs/a", **EXACT)
    result = run_cli("train", "config.yaml", "--no-monitor", "--nproc-per-node", "2", cwd=plain.root,
                     env=training_env(), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cached = make_workspace(tmp_path / "cached", tiny_model_dir, output_dir="runs/a", **EXACT)
    first = run_cli("train", "config.yaml", "--no-monitor", "--nproc-per-node", "2", "--precompute-ref",
                    cwd=cached.root, env=training_env(), timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert_same_steps(logged(plain), logged(cached))
    assert_same_weights(plain.out, cached.out)
    cached.write_config(output_dir="runs/b", pref_beta=0.2)
    second = run_cli("train", "config.yaml", "--no-monitor", "--nproc-per-node", "2", "--precompute-ref",
                     cwd=cached.root, env=training_env(), timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    rank_log = (cached.root / "runs" / "b" / "dpo-launch" / "logs" / "rank-0.log").read_text(encoding="utf-8")
    assert f"cache hit {cached.root / 'runs' / '.dpo-launch-cache' / 'ref-logps'}" in rank_log


def launched(ws: Workspace, *flags: str) -> None:
    env = training_env(TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    result = run_cli("train", "config.yaml", "--no-monitor", "--nproc-per-node", "2", *flags, cwd=ws.root, env=env,
                     timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("preset, changes", [
    ("ds_z2_config.json", {"pref_loss": "ipo", **LORA}),
    ("ds_z2_config.json", {"pref_loss": "hinge", **LORA}),
    ("ds_z3_config.json", {"pref_loss": "sigmoid"}),
    ("ds_z3_config.json", {"pref_loss": "kto_pair"}),
], ids=["zero2-lora-ipo", "zero2-lora-hinge", "zero3-full-sigmoid", "zero3-full-kto_pair"])
def test_cached_reference_under_deepspeed_on_two_ranks(tmp_path, tiny_model_dir, preset, changes):
    """Under ZeRO-3 the pass loads whole weights per rank (a partitioned model cannot run outside an engine)."""
    config = {"deepspeed": str(REPO / "config" / "deepspeed" / preset), **EXACT, **changes}
    plain = make_workspace(tmp_path / "plain", tiny_model_dir, **config)
    cached = make_workspace(tmp_path / "cached", tiny_model_dir, **config)
    launched(plain)
    launched(cached, "--precompute-ref")
    assert_same_steps(logged(plain), logged(cached))
    assert_same_weights(plain.out, cached.out)
    assert "reference log-probs: computing them" in (cached.out / "dpo-launch" / "logs" / "rank-0.log").read_text()
