"""An estimate above the GPU memory: `plan` lists the ways out, each with this config's estimate after it.

The estimates come from launcher.plan.memory (checked by hand in test_memory.py); here each way out must equal
the estimate of the config with that one change made, and the text must say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.lf.deepspeed import ZeroSettings
from launcher.lf.resolve import resolve_reference
from launcher.plan.memory import estimate_memory
from launcher.plan.memory_advice import ways_out

from support.cli import run_main

FULL_8B = """\
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
stage: dpo
do_train: true
finetuning_type: full
dataset: prefs
template: llama3
cutoff_len: 2048
output_dir: out
per_device_train_batch_size: 2
gradient_accumulation_steps: 4
learning_rate: 5.0e-7
bf16: true
report_to: tensorboard
"""
CONFIG = {"model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct", "stage": "dpo", "do_train": True,
          "finetuning_type": "full", "cutoff_len": 2048, "per_device_train_batch_size": 2,
          "gradient_accumulation_steps": 4, "bf16": True}


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    (tmp_path / "config.yaml").write_text(FULL_8B)
    return tmp_path


NO_DEEPSPEED = ZeroSettings(None)


def total(config: dict, cwd: Path, world: int, zero: ZeroSettings = NO_DEEPSPEED) -> float:
    return estimate_memory(config, resolve_reference(config, zero.stage), world, cwd, zero).total_gib


def test_each_way_out_is_the_estimate_of_the_config_with_that_change(offline):
    found = {way.change: way.total_gib for way in ways_out(CONFIG, 8, offline, NO_DEEPSPEED)}

    assert found == {
        "finetuning_type: lora": total({**CONFIG, "finetuning_type": "lora"}, offline, 8),
        "finetuning_type: lora + quantization_bit: 4":
            total({**CONFIG, "finetuning_type": "lora", "quantization_bit": 4}, offline, 8),
        "deepspeed: config/deepspeed/ds_z3_config.json": total(CONFIG, offline, 8, ZeroSettings(3)),
        "deepspeed: config/deepspeed/ds_z3_offload_config.json":
            total(CONFIG, offline, 8, ZeroSettings(3, True, True)),
        "cutoff_len: 1024": total({**CONFIG, "cutoff_len": 1024}, offline, 8),
        "per_device_train_batch_size: 1, gradient_accumulation_steps: 8":
            total({**CONFIG, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 8}, offline, 8),
        "pref_loss: orpo (or simpo)": total({**CONFIG, "pref_loss": "orpo"}, offline, 8),
    }
    assert all(value < total(CONFIG, offline, 8) for value in found.values())


def test_ways_that_do_not_apply_are_left_out(offline):
    config = {**CONFIG, "finetuning_type": "lora", "quantization_bit": 4, "per_device_train_batch_size": 1,
              "pref_loss": "simpo", "disable_gradient_checkpointing": True}

    found = [way.change for way in ways_out(config, 1, offline, ZeroSettings(3, True, True))]

    assert found == ["disable_gradient_checkpointing: false", "cutoff_len: 1024"]


def test_plan_with_gpu_memory_lists_the_ways_out_with_their_estimates(offline):
    result = run_main("plan", "config.yaml", "--no-data", "--nproc-per-node", "8", "--gpu-memory", "80GiB",
                      cwd=offline)
    data = json.loads(run_main("plan", "config.yaml", "--no-data", "--nproc-per-node", "8", "--gpu-memory", "80GiB",
                               "--format", "json", cwd=offline).stdout)["memory"]

    lines = result.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Out of GPU memory")))
    width = max(len(way["change"]) for way in data["ways_out"])
    assert result.returncode == 0
    assert lines[start:start + 1 + len(data["ways_out"])] == [
        f"Out of GPU memory: the estimate, {data['total_gib']:.2f} GiB per GPU, is more than 80.00 GiB (--gpu-memory "
        "80GiB). Ways out, each on its own, with this config's estimate per GPU:",
        *(f"  {way['change']:<{width}}  {way['total_gib']:>8.2f} GiB  {'fits' if way['fits'] else 'still too much'}: "
          f"{way['why']}" for way in data["ways_out"])]
    assert [(way["change"], way["fits"]) for way in data["ways_out"]] == [
        ("finetuning_type: lora", True), ("finetuning_type: lora + quantization_bit: 4", True),
        ("deepspeed: config/deepspeed/ds_z3_config.json", True),
        ("deepspeed: config/deepspeed/ds_z3_offload_config.json", True), ("cutoff_len: 1024", False),
        ("per_device_train_batch_size: 1, gradient_accumulation_steps: 8", False),
        ("pref_loss: orpo (or simpo)", False)]
    # On this CPU machine train refuses bf16 too; the memory refusal names the way to start anyway.
    refused = lines[lines.index("`dpo-launch train` would refuse this on this machine, before starting anything:"):]
    assert [line.split(": ")[1] for line in refused[1:-1]] == ["error[needs-gpu]", "error[out-of-memory]"]
    assert refused[2].endswith(f"error[out-of-memory]: the plan's estimate, {data['total_gib']:.2f} GiB per GPU, is "
                               "more than the 80.00 GiB of --gpu-memory 80GiB (take one of the ways out below, or "
                               "pass --no-memory-check to start anyway (the estimate is rough))")
    assert refused[-1] == ("✗ not ready here: 2 errors above, 0 warnings; once they are fixed, run: dpo-launch train "
                           "config.yaml --nproc-per-node 8 --gpu-memory 80GiB")


def test_plan_says_when_the_estimate_fits_and_lists_nothing(offline):
    result = run_main("plan", "config.yaml", "--no-data", "--gpu-memory", "2TiB", "--format", "json", cwd=offline)

    memory = json.loads(result.stdout)["memory"]
    assert (memory["gpu_memory"], memory["fits"], memory["ways_out"]) == (
        {"gib": 2048.0, "source": "--gpu-memory 2TiB"}, True, [])


def test_plan_without_gpus_or_gpu_memory_makes_no_claim_about_fitting(offline):
    result = run_main("plan", "config.yaml", "--no-data", "--format", "json", cwd=offline,
                      env={"HF_HUB_CACHE": str(offline / "no-cache"), "CUDA_VISIBLE_DEVICES": ""})

    memory = json.loads(result.stdout)["memory"]
    assert (memory["gpu_memory"], memory["fits"], memory["ways_out"]) == (None, None, [])


def test_plan_uses_the_smallest_detected_gpu_when_no_size_is_given(offline, monkeypatch):
    monkeypatch.setattr("launcher.run.preflight.visible_gpus", lambda env: 2)
    monkeypatch.setattr("launcher.plan.gpus.nvidia_smi_output",
                        lambda: "0, GPU-a, NVIDIA A100-SXM4-80GB, 8.0, 81920\n1, GPU-b, NVIDIA A10G, 8.6, 23028\n")

    result = run_main("plan", "config.yaml", "--no-data", "--format", "json", cwd=offline)

    memory = json.loads(result.stdout)["memory"]
    assert memory["gpu_memory"] == {"gib": 23028 / 1024, "source": "GPU 1, NVIDIA A10G, from nvidia-smi"}
    assert memory["fits"] is False
