"""The pure resolution behind `plan`: reference model, loss plan, batch and steps."""

from __future__ import annotations

import math

import pytest

from launcher.lf.resolve import (
    ADAPTER_DISABLED,
    EXPLICIT,
    FROZEN_COPY,
    NONE,
    POLICY,
    resolve_loss_plan,
    resolve_reference,
)
from launcher.plan.batch import resolve_batch, steps_per_epoch, training_examples

BASE = {"model_name_or_path": "models/base", "stage": "dpo", "do_train": True, "finetuning_type": "lora",
        "dataset": "prefs", "output_dir": "out"}


def config(**changes):
    return {**BASE, **changes}


# --- reference model ---------------------------------------------------------------------------------------

def test_lora_policy_uses_itself_with_adapters_disabled_as_reference():
    reference = resolve_reference(config())
    assert reference.kind == ADAPTER_DISABLED
    assert reference.description == "the LoRA policy with its adapters disabled, i.e. the base model models/base"
    assert reference.warnings == ()


@pytest.mark.parametrize("method", ["full", "freeze", "oft"])
def test_full_freeze_and_oft_build_a_frozen_copy_of_the_base_checkpoint(method):
    reference = resolve_reference(config(finetuning_type=method))
    assert (reference.kind, reference.source) == (FROZEN_COPY, "models/base")
    assert reference.description.startswith(f"a frozen copy of the base checkpoint ({method} fine-tuning)")


def test_explicit_ref_model_keeps_its_adapters_and_quantization_bits():
    reference = resolve_reference(config(ref_model="models/sft", ref_model_adapters="a1, a2",
                                         ref_model_quantization_bit=4))
    assert (reference.kind, reference.source, reference.adapters, reference.quantization_bit) == (
        EXPLICIT, "models/sft", ("a1", "a2"), 4)
    assert reference.description == "the explicit ref_model models/sft, with adapter(s) a1, a2, quantized to 4 bits"


def test_explicit_ref_model_under_qlora_is_unquantized_and_says_so():
    reference = resolve_reference(config(ref_model="models/sft", quantization_bit=4))
    assert reference.quantization_bit is None
    assert reference.description == "the explicit ref_model models/sft, unquantized"
    assert [w.code for w in reference.warnings] == ["reference-unquantized"]


@pytest.mark.parametrize("loss", ["orpo", "simpo"])
def test_orpo_and_simpo_have_no_reference(loss):
    reference = resolve_reference(config(pref_loss=loss, ref_model="models/sft"))
    assert reference.kind == NONE
    assert reference.description.startswith(f"none: {loss} is reference-free")


@pytest.mark.parametrize("method, kind", [("lora", ADAPTER_DISABLED), ("full", FROZEN_COPY)])
def test_kto_builds_its_reference_like_dpo_whatever_pref_loss_says(method, kind):
    assert resolve_reference(config(stage="kto", finetuning_type=method, pref_loss="orpo")).kind == kind


def test_evaluation_only_without_ref_model_uses_the_policy_itself():
    reference = resolve_reference(config(do_train=False))
    assert reference.kind == POLICY


def test_lora_continuing_an_sft_adapter_warns_that_the_reference_is_the_base_model():
    reference = resolve_reference(config(adapter_name_or_path="saves/sft"))
    assert reference.kind == ADAPTER_DISABLED
    assert reference.adapters == ()
    (warning,) = reference.warnings
    assert (warning.severity, warning.code, warning.key) == ("warning", "sft-adapter-reference", "adapter_name_or_path")
    assert "the reference is the BASE model" in warning.message and "#8459, #8974" in warning.message
    assert "create_new_adapter: true" in warning.hint and "ref_model_adapters" in warning.hint


def test_create_new_adapter_merges_the_sft_adapter_into_the_reference():
    reference = resolve_reference(config(adapter_name_or_path="saves/sft", create_new_adapter=True))
    assert reference.adapters == ("saves/sft",)
    assert reference.warnings == ()
    assert reference.description.endswith("i.e. models/base with saves/sft merged")


@pytest.mark.parametrize("blocker", [{"quantization_bit": 4}, {"deepspeed": "config/deepspeed/ds_z3_config.json"}])
def test_create_new_adapter_is_ignored_under_quantization_and_zero3(blocker):
    reference = resolve_reference(config(adapter_name_or_path="saves/sft", create_new_adapter=True, **blocker))
    assert [w.code for w in reference.warnings] == ["sft-adapter-reference"]
    assert "create_new_adapter is ignored under ZeRO-3 and quantization" in reference.warnings[0].message


def test_zero_stage_read_from_the_deepspeed_json_beats_the_file_name():
    settings = config(adapter_name_or_path="saves/sft", create_new_adapter=True, deepspeed="my_ds.json")
    assert resolve_reference(settings, zero_stage=3).warnings != ()
    assert resolve_reference(settings, zero_stage=2).warnings == ()


def test_only_the_last_of_several_adapters_is_resumed_and_the_rest_merge_into_the_reference():
    reference = resolve_reference(config(adapter_name_or_path="saves/a,saves/b"))
    assert reference.adapters == ("saves/a",)
    assert "saves/b" in reference.warnings[0].message


# --- loss --------------------------------------------------------------------------------------------------

def test_loss_plan_resolves_defaults_for_every_parameter_sigmoid_reads():
    plan = resolve_loss_plan(config())
    assert plan.name == "sigmoid"
    assert plan.parameters == {"pref_beta": 0.1, "dpo_label_smoothing": 0.0, "pref_ftx": 0.0,
                               "pref_bco_weight": 0.0, "ld_alpha": None}
    assert plan.first_step_loss == pytest.approx(math.log(2))
    assert not plan.silently_sigmoid_under_llamafactory_cli
    assert plan.findings == ()


def test_ipo_plan_notes_that_llamafactory_cli_would_silently_run_sigmoid():
    plan = resolve_loss_plan(config(pref_loss="ipo", pref_beta=0.2))
    assert plan.parameters["pref_beta"] == 0.2
    assert plan.first_step_loss == pytest.approx(6.25)
    assert plan.silently_sigmoid_under_llamafactory_cli
    assert [f.code for f in plan.findings] == ["loss-silently-sigmoid"]


def test_simpo_plan_reads_gamma_and_warns_when_beta_makes_the_margin_large():
    plan = resolve_loss_plan(config(pref_loss="simpo", simpo_gamma=1.0))
    assert plan.parameters == {"pref_beta": 0.1, "simpo_gamma": 1.0, "pref_ftx": 0.0}
    assert plan.first_step_loss is None
    (finding,) = plan.findings
    assert finding.code == "simpo-beta-small"
    assert finding.message == "SimPO uses pref_beta 0.1 as β, so the margin γ/β is 10"
    assert resolve_loss_plan(config(pref_loss="simpo", pref_beta=2.5)).findings == ()


def test_kto_plan_reads_the_class_weights():
    plan = resolve_loss_plan(config(stage="kto", kto_chosen_weight=2.0, kto_rejected_weight=2.0))
    assert (plan.name, plan.stage) == ("kto", "kto")
    assert plan.parameters["kto_chosen_weight"] == 2.0
    assert plan.first_step_loss == pytest.approx(1.0)


def test_sft_term_removes_the_closed_form_first_step_loss():
    plan = resolve_loss_plan(config(pref_ftx=0.5, ld_alpha=0.3))
    assert plan.parameters["pref_ftx"] == 0.5 and plan.parameters["ld_alpha"] == 0.3
    assert plan.first_step_loss is None


# --- batch and steps ---------------------------------------------------------------------------------------

def test_effective_batch_is_per_device_times_accumulation_times_world():
    batch = resolve_batch(config(per_device_train_batch_size=2, gradient_accumulation_steps=4), world_size=16)
    assert (batch.effective_batch, batch.sequences_per_forward) == (128, 4)
    assert batch.steps_per_epoch is None and batch.total_steps is None


def test_per_device_batch_defaults_to_transformers_8():
    assert resolve_batch(config(), world_size=1).effective_batch == 8


@pytest.mark.parametrize("examples, bs, accumulation, world, expected", [
    (100, 2, 4, 1, 13),   # 50 batches -> ceil(50/4) = 13, the partial accumulation counts
    (100, 2, 4, 2, 7),    # ceil(100/4) = 25 batches per rank -> ceil(25/4) = 7
    (7, 8, 1, 1, 1),      # fewer examples than a batch: one step
    (10, 4, 8, 1, 1),     # fewer batches than one accumulation: still one step
    (1000, 3, 1, 3, 112), # ceil(1000/9) = 112
])
def test_steps_per_epoch_follows_transformers_rounding(examples, bs, accumulation, world, expected):
    assert steps_per_epoch(examples, bs, accumulation, world) == expected


def test_drop_last_floors_the_batches():
    assert steps_per_epoch(100, 8, 1, 2) == 7
    assert steps_per_epoch(100, 8, 1, 2, drop_last=True) == 6


def test_steps_from_a_local_dataset_apply_max_samples_and_val_size():
    settings = config(dataset="a,b", max_samples=50, val_size=0.1, per_device_train_batch_size=4,
                      gradient_accumulation_steps=2, num_train_epochs=2.0)
    # a: min(80, 50) = 50, b: 30 -> 80; ceil(0.1 x 80) = 8 held out -> 72; ceil(72/4) = 18 batches -> 9 steps
    batch = resolve_batch(settings, world_size=1, dataset_sizes={"a": 80, "b": 30})
    assert (batch.train_examples, batch.eval_examples) == (72, 8)
    assert (batch.steps_per_epoch, batch.total_steps, batch.epochs) == (9, 18, 2.0)


def test_integer_val_size_holds_out_that_many_examples():
    assert training_examples(config(val_size=25), {"prefs": 100}) == ((75, 25), "")


def test_fractional_epochs_round_the_total_up():
    batch = resolve_batch(config(per_device_train_batch_size=1, num_train_epochs=1.5), 1, {"prefs": 5})
    assert (batch.steps_per_epoch, batch.total_steps) == (5, 8)


def test_max_steps_overrides_epochs():
    batch = resolve_batch(config(per_device_train_batch_size=1, max_steps=3), 1, {"prefs": 10})
    assert (batch.steps_per_epoch, batch.total_steps, batch.epochs) == (10, 3, 0.3)


@pytest.mark.parametrize("changes, sizes, why", [
    ({}, {}, "steps: unknown (not a local dataset: prefs)"),
    ({"streaming": True, "max_steps": 100}, {"prefs": 10},
     "steps: unknown (streaming datasets have no length; max_steps sets the total)"),
    ({"dataset": "a,b", "mix_strategy": "interleave_under"}, {"a": 1, "b": 2},
     "steps: unknown (mix_strategy interleave_under resamples the datasets)"),
])
def test_steps_are_unknown_without_local_counts_and_say_why(changes, sizes, why):
    batch = resolve_batch(config(**changes), 1, sizes)
    assert batch.steps_per_epoch is None
    assert batch.notes == (why,)
    assert batch.total_steps == (100 if changes.get("max_steps") else None)
