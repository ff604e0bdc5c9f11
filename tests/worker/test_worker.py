"""The worker (`python -m launcher.worker --args-file`): its loss fix, its first-batch self-test, its failures,
and the shipped demo files it trains on."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from launcher.worker.main import main as worker_main

from support.cli import run_cli
from support.training import REPO, run_worker, training_env

WORKER = [sys.executable, "-m", "launcher.worker", "--args-file"]


def worker(args_file: Path) -> subprocess.CompletedProcess:
    """The worker's `main` in process: argument errors end it before anything heavy is imported."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = worker_main(["--args-file", str(args_file)])
    return subprocess.CompletedProcess(WORKER, code, "", err.getvalue())


# --- bad input: one line, exit 1, before anything heavy is imported ------------------------------------------

def test_a_missing_args_file_is_one_line_and_exit_1(tmp_path):
    result = worker(tmp_path / "missing.json")
    assert (result.returncode, result.stderr) == (
        1, f"dpo-launch worker: cannot read --args-file {tmp_path / 'missing.json'}: No such file or directory\n")


def test_args_that_are_not_json_name_the_line_and_column(tmp_path):
    path = tmp_path / "args.json"
    path.write_text('{"stage": "dpo",\n  "pref_loss": }\n')
    result = worker(path)
    assert (result.returncode, result.stderr) == (
        1, f"dpo-launch worker: {path}:2:16: not valid JSON: Expecting value\n")


def test_an_unknown_pref_loss_is_refused_before_training(tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"stage": "dpo", "pref_loss": "sigmod"}))
    result = worker(path)
    assert (result.returncode, result.stderr) == (
        1, "dpo-launch worker: pref_loss: expected one of sigmoid, hinge, ipo, kto_pair, orpo, simpo "
           "but got 'sigmod'\n")


# --- the self-test as pure logic ------------------------------------------------------------------------------

def test_self_test_passes_within_tolerance_and_says_so():
    from launcher.worker.selftest import judge

    assert judge({"stage": "dpo", "pref_loss": "ipo", "pref_beta": 0.1}, 25.01) == (
        "passed", pytest.approx(25.0),
        "dpo-launch worker: loss self-test passed: ipo first-batch loss 25.0100 matches (0 − 1/(2β))² = 25.0000 "
        "at β 0.1")


def test_self_test_is_skipped_where_policy_and_reference_may_differ_at_step_0():
    from launcher.worker.selftest import judge

    assert judge({"stage": "dpo", "pref_loss": "sigmoid", "adapter_name_or_path": "sft"}, 0.3) == (
        "skipped", None, "dpo-launch worker: loss self-test skipped: the policy starts from an adapter, so it may "
                         "differ from its reference at step 0")
    assert judge({"stage": "dpo", "pref_loss": "simpo"}, 0.97)[0] == "skipped"


@pytest.mark.parametrize("observed", [math.nan, math.inf])
def test_a_non_finite_first_loss_is_reported_as_such_not_as_the_wrong_loss(observed):
    from launcher.worker.selftest import judge

    status, expected, message = judge({"stage": "dpo", "pref_loss": "sigmoid"}, observed)
    assert (status, expected) == ("non-finite", pytest.approx(math.log(2)))
    assert message == (f"dpo-launch worker: loss self-test failed: the first batch's loss is {observed}, not a number "
                       "the pref_loss sigmoid loss can give: the forward pass produced non-finite values (a wrong "
                       "loss would still be finite)")


def test_a_resume_the_config_did_not_ask_for_is_named_not_blamed_on_the_loss():
    from launcher.worker.selftest import judge

    assert judge({"stage": "dpo", "pref_loss": "sigmoid"}, 0.41, resumed_from="out/checkpoint-2") == (
        "skipped", None, "dpo-launch worker: loss self-test skipped: training resumed from out/checkpoint-2 although "
        "the config does not ask to resume (LLaMA-Factory resumes from the last checkpoint-N in output_dir when "
        "resume_from_checkpoint is not set); the policy has moved from its reference, so the first-batch loss has "
        "no closed form")
    # asked for (`train --resume` sets it): the usual skip
    assert judge({"stage": "dpo", "resume_from_checkpoint": "out/checkpoint-2"}, 0.41,
                 resumed_from="out/checkpoint-2")[2].endswith("training resumes from a checkpoint, where the policy "
                                                              "has already moved from its reference")


@pytest.mark.slow  # imports torch in process
def test_kto_pair_loss_is_one_half_at_equal_policy_and_reference_and_falls_as_chosen_rises():
    import torch

    from launcher.worker.loss_patch import kto_pair_loss

    logps = torch.tensor([-5.0, -7.0])
    losses, chosen, rejected = kto_pair_loss(0.1, logps, logps - 1, logps, logps - 1)
    assert losses.tolist() == [0.5, 0.5] and chosen.tolist() == rejected.tolist() == [0.0, 0.0]
    better, _, _ = kto_pair_loss(0.1, logps + 2, logps - 1, logps, logps - 1)
    # chosen log-ratio 2: chosen half 1 − σ(0.2), rejected half 1 − σ(0.1·(2 − 0)) through the clamped KL.
    assert better.tolist() == pytest.approx([1 - 1 / (1 + math.exp(-0.2))] * 2)


# --- real runs ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_self_test_stops_the_run_when_the_upstream_bug_trains_sigmoid_for_hinge(dpo_workspace):
    dpo_workspace.write_config(pref_loss="hinge", max_steps=2)
    result = run_worker(dpo_workspace, env=training_env(DPO_LAUNCH_DISABLE_LOSS_PATCH="1"))
    assert result.returncode == 1
    versions = f"trl {metadata.version('trl')}, llamafactory {metadata.version('llamafactory')}"
    assert result.stderr.splitlines()[-1] == (
        "dpo-launch worker: loss self-test failed: pref_loss hinge should start at relu(1 − β·0) = 1.0000 at β 0.1 "
        "when the policy equals its reference, but the first batch gave 0.6931 (relative error 30.7%); the "
        f"loss that runs is not the loss asked for ({versions})")
    loss = dpo_workspace.runtime()["loss"]
    assert (loss["self_test"], round(loss["first_batch_loss"], 4)) == ("failed", 0.6931)
    assert not (dpo_workspace.out / "trainer_state.json").exists()


def nan_weights_model(source: Path, target: Path) -> Path:
    """A copy of the tiny model whose float32 weights are all NaN (safetensors: u64 header size, JSON, data)."""
    import shutil
    import struct

    shutil.copytree(source, target)
    blob = bytearray((target / "model.safetensors").read_bytes())
    start = 8 + struct.unpack("<Q", blob[:8])[0]
    blob[start:] = struct.pack("<f", math.nan) * ((len(blob) - start) // 4)
    (target / "model.safetensors").write_bytes(bytes(blob))
    return target


@pytest.mark.slow
def test_nan_weights_fail_the_self_test_as_a_non_finite_loss_naming_the_weights(dpo_workspace, tiny_model_dir):
    model = nan_weights_model(tiny_model_dir, dpo_workspace.root / "nan-model")
    dpo_workspace.write_config(model_name_or_path=str(model), max_steps=2)
    result = run_worker(dpo_workspace)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "dpo-launch worker: loss self-test failed: the first batch's loss is nan, not a number the pref_loss "
        "sigmoid loss can give: the forward pass produced non-finite values (a wrong loss would still be finite); "
        "21 of the model's 21 parameter tensors hold NaN or inf (the first: model.embed_tokens.weight): the weights "
        "loaded from model_name_or_path (or adapter_name_or_path) are broken")
    assert dpo_workspace.runtime()["loss"]["self_test"] == "non-finite"


@pytest.mark.slow
def test_a_run_that_resumed_another_runs_checkpoint_skips_the_self_test_and_says_why(dpo_workspace):
    dpo_workspace.write_config(max_steps=2, learning_rate=1e-2, save_strategy="steps", save_steps=2)
    first = run_worker(dpo_workspace)
    assert first.returncode == 0, first.stderr[-3000:]
    # the same output_dir again, without resume_from_checkpoint: LLaMA-Factory resumes checkpoint-2 on its own
    dpo_workspace.write_config(max_steps=4)
    second = run_worker(dpo_workspace)
    assert second.returncode == 0, second.stderr[-3000:]
    checkpoint = dpo_workspace.output_dir + "/checkpoint-2"
    assert (f"dpo-launch worker: loss self-test skipped: training resumed from {checkpoint} although the config "
            "does not ask to resume") in second.stdout + second.stderr
    assert "the loss that runs is not the loss asked for" not in second.stdout + second.stderr
    assert dpo_workspace.runtime()["loss"]["self_test"] == "skipped"


@pytest.mark.slow
def test_a_training_failure_is_one_line_with_the_traceback_kept_in_the_run_directory(dpo_workspace):
    dpo_workspace.write_config(model_name_or_path=str(dpo_workspace.root / "no-such-model"))
    result = run_worker(dpo_workspace)
    crash = dpo_workspace.out / "dpo-launch" / "logs" / "crash-rank-0.txt"
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("dpo-launch worker: training failed on rank 0: OSError: ")
    assert last.endswith(f" (traceback in {crash})")
    assert "Traceback (most recent call last)" in crash.read_text()


@pytest.mark.slow
def test_worker_under_torchrun_with_two_processes_reports_world_size_2(dpo_workspace):
    dpo_workspace.write_config(pref_loss="ipo", max_steps=2)
    args = dpo_workspace.write_args()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29613",
                "-m", "launcher.worker", "--args-file", str(args)]
    result = subprocess.run(torchrun, cwd=dpo_workspace.root, env=training_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runtime = dpo_workspace.runtime()
    assert runtime["world_size"] == 2
    assert (runtime["loss"]["name"], runtime["loss"]["self_test"]) == ("ipo", "passed")
    assert runtime["loss"]["first_batch_loss"] == pytest.approx(25.0, rel=1e-3)


# --- shipped demo files ---------------------------------------------------------------------------------------

@pytest.mark.subprocess
def test_committed_demo_data_is_exactly_what_the_generator_makes():
    result = subprocess.run([sys.executable, "scripts/make_demo_data.py", "--check"], cwd=REPO, capture_output=True,
                            text=True)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.subprocess
@pytest.mark.parametrize("config", ["demo_dpo.yaml", "demo_kto.yaml"])
def test_demo_configs_validate_without_errors(config, tiny_model_dir):
    result = run_cli("validate", f"config/{config}", f"model_name_or_path={tiny_model_dir}", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error[" not in result.stdout  # the toy learning rate draws a warning, by design


def test_demo_configs_open_with_their_command_and_schema():
    for name in ("demo_dpo", "demo_kto"):
        lines = (REPO / "config" / f"{name}.yaml").read_text().splitlines()
        assert lines[:2] == [f"# OMP_NUM_THREADS=1 dpo-launch train config/{name}.yaml",
                             "# yaml-language-server: $schema=../schemas/dpo-config.schema.json"]
