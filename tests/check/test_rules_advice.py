"""What LLaMA-Factory lets through (silent sigmoid, ignored reference, the SFT-adapter trap) and the advice warnings."""

from __future__ import annotations

import json
import os
import re

import pytest
from test_rules import BASE, codes, make_workspace, rendered

from launcher.check.config import load_config
from launcher.check.rules.registry import check_rules

from support.cli import run_main
from support.workspaces import CONFIG, write_workspace


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    return make_workspace(tmp_path, monkeypatch)


@pytest.mark.parametrize("loss", ["hinge", "ipo", "kto_pair"])
def test_losses_that_llamafactory_cli_silently_trains_as_sigmoid_warn_at_the_pref_loss_line(workspace, loss):
    lines = rendered(workspace, BASE + f"pref_loss: {loss}\n")

    assert lines == [
        f"config.yaml:9:12: warning[loss-silently-sigmoid]: pref_loss: '{loss}' silently trains the sigmoid loss "
        "under `llamafactory-cli train` with the installed trl (>= 0.20): LLaMA-Factory passes no loss_type to "
        "trl's dpo_loss, which then defaults to sigmoid (launch with `dpo-launch train`, which runs "
        f"{loss} as itself and checks it on the first batch)"]


@pytest.mark.parametrize("loss", ["sigmoid", "orpo"])
def test_losses_that_run_as_themselves_under_llamafactory_cli_do_not_warn(workspace, loss):
    assert codes(workspace, BASE + f"pref_loss: {loss}\n") == []


def test_a_reference_model_with_a_reference_free_loss_is_reported_as_ignored(workspace):
    text = BASE + "pref_loss: orpo\nref_model: models/base\nref_model_quantization_bit: 4\n"

    assert codes(workspace, text) == [("warning", "reference-ignored"), ("warning", "reference-ignored"),
                                      ("note", "machine-quantization")]


def test_simpo_with_the_dpo_sized_beta_warns_with_the_resulting_margin(workspace):
    lines = rendered(workspace, BASE + "pref_loss: simpo\n")

    assert lines == [
        "config.yaml: warning[simpo-beta-small]: SimPO uses pref_beta 0.1 as β, so the margin γ/β is 5 (the SimPO "
        "paper uses β 2-10 with γ/β 0.3-0.6, e.g. pref_beta: 2.5, simpo_gamma: 1.375)"]
    assert codes(workspace, BASE + "pref_loss: simpo\npref_beta: 2.5\nsimpo_gamma: 1.375\n") == []


def test_report_to_without_tensorboard_warns_also_when_it_is_left_at_the_default(workspace):
    assert rendered(workspace, BASE.replace("report_to: tensorboard", "report_to: wandb"))[0] == (
        "config.yaml:7:12: warning[report-to-without-tensorboard]: report_to is 'wandb', without tensorboard: "
        "`llamafactory-cli train` will not log rewards/* and logps/* to TensorBoard (add tensorboard, e.g. "
        "report_to: [tensorboard]; `dpo-launch train` adds it by itself)")
    assert codes(workspace, BASE.replace("report_to: tensorboard\n", "")) == [
        ("warning", "report-to-without-tensorboard")]
    assert codes(workspace, BASE.replace("report_to: tensorboard", "report_to: [wandb, tensorboard]")) == [
        ("note", "machine-package")]  # wandb: checked where the job runs


def test_under_train_what_train_fixes_itself_is_a_note_saying_what_train_does(workspace):
    (workspace / "config.yaml").write_text(BASE.replace("report_to: tensorboard", "report_to: wandb")
                                           + "pref_loss: hinge\n")
    found = [d.render() for d in check_rules(load_config("config.yaml", ()), workspace, launching=True)
             if d.code in ("report-to-without-tensorboard", "loss-silently-sigmoid")]
    assert found == [
        "config.yaml:9:12: note[loss-silently-sigmoid]: pref_loss: 'hinge': `dpo-launch train` runs hinge itself (it "
        "patches the loss LLaMA-Factory hands to trl, which `llamafactory-cli train` would silently run as sigmoid) "
        "and checks it on the first batch",
        "config.yaml:7:12: note[report-to-without-tensorboard]: report_to is 'wandb', without tensorboard: "
        "`dpo-launch train` adds tensorboard, so rewards/* and logps/* reach TensorBoard, the monitor and the health "
        "alerts"]


def test_train_prints_those_as_notes_and_validate_keeps_warning_about_llamafactory_cli(tmp_path):
    root = write_workspace(tmp_path, CONFIG.replace("report_to: tensorboard\n", "").replace("sigmoid", "ipo"))
    env = {**os.environ, "HF_HUB_CACHE": str(root)}
    train = run_main("train", "config.yaml", "--dry-run", cwd=root, env=env)
    assert train.returncode == 0, train.stdout + train.stderr
    found = re.findall(r"\b(error|warning|note)\[([\w-]+)\]", train.stdout)
    assert ("note", "loss-silently-sigmoid") in found and ("note", "report-to-without-tensorboard") in found
    assert not [code for severity, code in found if severity == "warning"], train.stdout
    validate = run_main("validate", "config.yaml", cwd=root, env=env)
    assert "warning[loss-silently-sigmoid]" in validate.stdout
    assert "warning[report-to-without-tensorboard]" in validate.stdout


def test_learning_rate_advice_allows_lora_ten_times_more_than_full_fine_tuning(workspace):
    lora = BASE.replace("learning_rate: 5.0e-6", "learning_rate: 5.0e-5")
    full = lora.replace("finetuning_type: lora", "finetuning_type: full")

    assert codes(workspace, lora) == []
    assert rendered(workspace, full) == [
        "config.yaml:8:16: warning[learning-rate-high]: learning_rate: 5e-5 is above 1e-5, high for DPO with full "
        "fine-tuning: the policy drifts from the reference and both rewards fall (the DPO paper and LLaMA-Factory's "
        "examples use 5e-7 to 5e-6; LoRA tolerates about 10x more)"]
    assert codes(workspace, BASE.replace("learning_rate: 5.0e-6", "learning_rate: 2.0e-4")) == [
        ("warning", "learning-rate-high")]


def test_the_default_learning_rate_of_transformers_is_too_high_for_full_dpo(workspace):
    text = BASE.replace("learning_rate: 5.0e-6\n", "").replace("finetuning_type: lora", "finetuning_type: full")

    assert rendered(workspace, text)[0].startswith(
        "config.yaml: warning[learning-rate-high]: learning_rate is not set, so transformers' default 5e-5 applies; "
        "it is above 1e-5")


def test_more_than_three_epochs_warns_unless_max_steps_bounds_the_run(workspace):
    assert codes(workspace, BASE + "num_train_epochs: 5\n") == [("warning", "too-many-epochs")]
    assert codes(workspace, BASE + "num_train_epochs: 5\nmax_steps: 100\n") == []


def test_a_json_config_warns_that_llamafactory_cli_cannot_read_it(workspace):
    text = json.dumps({key: value for key, value in (line.split(": ") for line in BASE.splitlines())}
                      | {"do_train": True, "learning_rate": 5e-6})

    assert rendered(workspace, text, name="config.json") == [
        "config.json: warning[json-config]: LLaMA-Factory 0.9.5 cannot read JSON configs: `llamafactory-cli train` "
        "fails with \"AttributeError: 'PosixPath' object has no attribute 'read'\" (LLaMA-Factory #10316) "
        "(`dpo-launch train` reads JSON configs; for llamafactory-cli, save the config as YAML)"]


@pytest.fixture
def sft_adapter(workspace):
    (workspace / "sft").mkdir()
    (workspace / "sft" / "adapter_config.json").write_text("{}")
    return "adapter_name_or_path: sft\n"


def test_lora_dpo_continuing_an_sft_adapter_without_a_reference_warns_of_the_base_reference(workspace, sft_adapter):
    lines = rendered(workspace, BASE + sft_adapter)

    assert lines == [
        "config.yaml:9:23: warning[sft-adapter-reference]: LoRA DPO continues the adapter sft without ref_model, so "
        "the reference is the BASE model, not your SFT model: rewards start skewed and the loss can collapse to 0 "
        "(LLaMA-Factory #8459, #8974) (fix: set create_new_adapter: true, which works except under ZeRO-3 or "
        "quantization; or train from a merged SFT checkpoint; or set ref_model: <base> with ref_model_adapters: "
        "<sft adapter>)"]


def test_the_sft_adapter_trap_is_avoided_by_create_new_adapter_or_an_explicit_reference(workspace, sft_adapter):
    assert codes(workspace, BASE + sft_adapter + "create_new_adapter: true\n") == []
    assert codes(workspace, BASE + sft_adapter + "ref_model: models/base\nref_model_adapters: sft\n") == []


def test_create_new_adapter_does_not_avoid_the_sft_adapter_trap_under_zero3(workspace, sft_adapter):
    text = BASE + sft_adapter + "create_new_adapter: true\ndeepspeed: ds.json\n"
    (workspace / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))

    found = [d for d in codes(workspace, text) if d[0] == "warning"]

    assert found == [("warning", "sft-adapter-reference")]
