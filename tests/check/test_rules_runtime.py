"""Settings LLaMA-Factory accepts and then fails on, 8-23 s into `train`: validate reports each, located.

The five reported in issue 12, then the rest of the class the differential test (test_lf_differential.py) found.
"""

from __future__ import annotations

import json

import pytest

from support.cli import run_main
from support.workspaces import CONFIG_ONLY

HF = 'transformers stops with "'


def errors(tmp_path, *overrides: str, config: str = CONFIG_ONLY) -> list[str]:
    (tmp_path / "config.yaml").write_text(config)
    result = run_main("validate", "config.yaml", *overrides, "--no-data", cwd=tmp_path)
    return [line for line in result.stdout.splitlines() if ": error[" in line]


@pytest.mark.parametrize(("overrides", "expected"), [
    (["logging_steps=0"],
     "<command line>: error[logging-steps-zero]: logging_steps: 0 with logging_strategy 'steps' never logs (set "
     "logging_steps to a number of steps (e.g. 10), or logging_strategy: epoch or no; " + HF + "logging strategy "
     'IntervalStrategy.STEPS requires non-zero --logging_steps")'),
    (["preprocessing_num_workers=0"],
     "<command line>: error[range]: preprocessing_num_workers: expected a number at least 1 but got 0 (datasets' map "
     "needs at least one process (num_proc > 0); leave it unset to preprocess in this process)"),
    (["dataloader_num_workers=-1"],
     "<command line>: error[range]: dataloader_num_workers: expected a number at least 0 but got -1 (torch's "
     "DataLoader needs 0 (load in the main process) or more worker processes)"),
    (["load_best_model_at_end=true", "eval_strategy=steps", "val_size=0.1", "eval_steps=30", "save_steps=50"],
     "<command line>: error[best-model-steps-not-multiple]: load_best_model_at_end: true needs save_steps to be a "
     "multiple of eval_steps, but save_steps is 50 and eval_steps is 30 (make save_steps a multiple of eval_steps "
     "(both step counts, or both fractions); " + HF + "--load_best_model_at_end requires the saving steps to be a "
     'round multiple of the evaluation steps, but found 50, which is not a round multiple of 30.")'),
    (["resume_from_checkpoint=out/checkpoint-100"],
     "<command line>: error[resume-checkpoint-invalid]: resume_from_checkpoint: 'out/checkpoint-100' does not exist "
     "(point it at a checkpoint-N folder, or remove it (`dpo-launch train --resume` picks the last complete one); "
     "transformers stops with \"Can't find a valid checkpoint at out/checkpoint-100\")"),
])
def test_the_five_settings_that_failed_seconds_into_train_are_errors_in_validate(tmp_path, overrides, expected):
    assert errors(tmp_path, *overrides) == [expected]


@pytest.mark.parametrize(("overrides", "code"), [
    (["save_steps=12.5"], "steps-not-whole"),
    (["eval_strategy=steps", "val_size=0.1", "eval_steps=2.5"], "steps-not-whole"),
    (["logging_steps=-5"], "steps-negative"),
    (["dataloader_prefetch_factor=2"], "prefetch-without-workers"),
    (["export_quantization_bit=4"], "export-quantization-without-dataset"),
    (["seed=-1"], "range"),
    (["seed=4294967296"], "range"),
    (["warmup_steps=-1"], "range"),
    (["torch_empty_cache_steps=0"], "range"),
    (["reward_model_quantization_bit=3"], "enum"),
    (["max_samples=0"], "range"),
    (["adam_beta1=1.0"], "range"),
    (["adam_beta2=-0.1"], "range"),
    (["weight_decay=-0.01"], "range"),
    (["adam_epsilon=-1e-8"], "range"),
    (["fp16_full_eval=true", "bf16_full_eval=true"], "fp16-and-bf16"),
    (["load_best_model_at_end=true", "eval_strategy=steps", "val_size=0.1", "eval_steps=0.1", "save_steps=50"],
     "best-model-steps-not-multiple"),
    (["load_best_model_at_end=true", "eval_strategy=steps", "val_size=0.1", "eval_steps=0.2", "save_steps=0.3"],
     "best-model-steps-not-multiple"),
    (["load_best_model_at_end=true", "eval_strategy=steps", "val_size=0.1", "logging_steps=30", "save_steps=50"],
     "best-model-steps-not-multiple"),
    (["flash_attn=fa3"], "flash-attn-3-unsupported"),
])
def test_the_rest_of_the_class_is_an_error_too(tmp_path, overrides, code):
    assert [line.split(": error[")[1].split("]")[0] for line in errors(tmp_path, *overrides)] == [code]


@pytest.mark.parametrize("overrides", [
    ["logging_strategy=epoch", "logging_steps=0"],
    ["save_steps=0.25"],
    ["eval_strategy=steps", "val_size=0.1", "eval_steps=0"],  # falls back to logging_steps
    ["load_best_model_at_end=true", "eval_strategy=steps", "val_size=0.1", "eval_steps=25", "save_steps=50"],
    ["load_best_model_at_end=true", "eval_strategy=steps", "val_size=0.1", "eval_steps=0.5", "save_steps=2"],
    ["load_best_model_at_end=true", "eval_strategy=steps", "val_size=0.1", "save_strategy=best", "save_steps=7"],
    ["dataloader_num_workers=2", "dataloader_prefetch_factor=4"],
    ["preprocessing_num_workers=1", "seed=0", "warmup_steps=0.1", "max_samples=1"],
    ["flash_attn=sdpa"],
])
def test_values_transformers_accepts_are_not_errors(tmp_path, overrides):
    assert errors(tmp_path, *overrides) == []


def test_fa3_is_an_error_that_says_what_llamafactory_raises_and_what_to_use(tmp_path):
    assert errors(tmp_path, "flash_attn=fa3") == [
        "<command line>: error[flash-attn-3-unsupported]: flash_attn: 'fa3' is not implemented in LLaMA-Factory "
        "0.9.5: loading any model but gpt-oss stops with \"NotImplementedError: Unknown attention type: fa3\" (use "
        "flash_attn: fa2 (or auto); gpt-oss gets FlashAttention-3 by itself with auto)"]


def test_save_steps_zero_warns_that_no_checkpoint_is_ever_saved(tmp_path):
    (tmp_path / "config.yaml").write_text(CONFIG_ONLY + "save_steps: 0\n")

    result = run_main("validate", "config.yaml", "--no-data", "--format", "json", cwd=tmp_path)

    found = [(d["severity"], d["code"], d["line"]) for d in json.loads(result.stdout)["diagnostics"]
             if d["code"] != "hub-id-not-checked"]
    assert (result.returncode, found) == (0, [("warning", "save-steps-zero", 8)])


def _checkpoint(root, *files: str, folders: tuple[str, ...] = ()):
    root.mkdir(parents=True)
    for name in files:
        (root / name).write_text("{}")
    for name in folders:
        (root / name).mkdir()
    return root


@pytest.mark.parametrize(("files", "folders", "deepspeed", "problem"), [
    (("model.safetensors", "trainer_state.json"), (), False, None),
    (("adapter_model.safetensors", "trainer_state.json"), (), False, None),
    (("trainer_state.json",), ("global_step8",), True, None),
    (("trainer_state.json",), (), False, "is not a complete checkpoint: no model weights (no model.safetensors, "
                                          "adapter_model.safetensors, pytorch_model.bin or shards)"),
    (("model.safetensors",), (), False, "is not a complete checkpoint: no trainer_state.json: its save did not finish"),
    ((), (), False, "is not a complete checkpoint: no trainer_state.json: its save did not finish"),
    (("model.safetensors", "trainer_state.json"), (), True, "has no global_step* folder, which DeepSpeed resumes from"),
])
def test_resume_from_checkpoint_must_be_a_checkpoint_the_trainer_can_load(tmp_path, files, folders, deepspeed,
                                                                          problem):
    _checkpoint(tmp_path / "out" / "checkpoint-8", *files, folders=folders)
    config = CONFIG_ONLY + "resume_from_checkpoint: out/checkpoint-8\n"
    if deepspeed:
        (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 2}}')
        config += "deepspeed: ds.json\n"

    found = errors(tmp_path, config=config)

    assert found == ([] if problem is None else [
        f"config.yaml:8:25: error[resume-checkpoint-invalid]: resume_from_checkpoint: 'out/checkpoint-8' {problem} "
        "(point it at a checkpoint-N folder, or remove it (`dpo-launch train --resume` picks the last complete one); "
        "transformers stops with \"Can't find a valid checkpoint at out/checkpoint-8\")"])
