"""Which models an evaluation loads, read from a run directory: the trained policy, the reference it trained
against, the model it started from, and MODEL_OR_RUN as the user names it."""

from __future__ import annotations

import json

import pytest

from launcher.errors import UserError
from launcher.evaluate.models import ModelSpec, Run, model_source


def make_run(root, weights="model.safetensors", **config):
    """A run directory as `dpo-launch train` leaves it, launched from `root` with dataset_dir `data`."""
    out = root / "out"
    (out / "dpo-launch").mkdir(parents=True)
    (root / "base").mkdir()
    values = {"model_name_or_path": "base", "stage": "dpo", "do_train": True, "finetuning_type": "full",
              "template": "default", "dataset_dir": "data", "output_dir": str(out), **config}
    (out / "dpo-launch" / "resolved_config.json").write_text(json.dumps(values))
    (out / "dpo-launch" / "datasets.json").write_text(json.dumps({"dataset_dir": str(root / "data")}))
    if weights:
        (out / weights).write_text("{}")
    return out


def test_a_full_run_is_evaluated_as_its_weights_against_a_frozen_copy_of_the_base(tmp_path):
    run = Run.load(make_run(tmp_path))
    assert run.launch_dir == tmp_path
    assert run.policy() == ModelSpec(str(tmp_path / "out"), (), "full", "default")
    assert run.reference() == run.base() == ModelSpec(str(tmp_path / "base"), (), "full", "default")


def test_a_lora_run_is_the_base_plus_its_adapter_against_the_base(tmp_path):
    run = Run.load(make_run(tmp_path, weights="adapter_config.json", finetuning_type="lora", quantization_bit=4))
    assert run.policy() == ModelSpec(str(tmp_path / "base"), (str(tmp_path / "out"),), "lora", "default",
                                     {"quantization_bit": 4})
    assert run.reference() == ModelSpec(str(tmp_path / "base"), (), "full", "default", {"quantization_bit": 4})
    assert run.policy().lf_args() == {"model_name_or_path": str(tmp_path / "base"), "quantization_bit": 4,
                                      "adapter_name_or_path": str(tmp_path / "out"), "finetuning_type": "lora",
                                      "template": "default"}


def test_a_lora_run_continuing_a_merged_sft_adapter_keeps_it_in_policy_and_reference(tmp_path):
    (tmp_path / "sft").mkdir()
    run = Run.load(make_run(tmp_path, weights="adapter_config.json", finetuning_type="lora",
                            adapter_name_or_path="sft", create_new_adapter=True))
    assert run.policy().adapters == (str(tmp_path / "sft"), str(tmp_path / "out"))
    assert run.reference().adapters == (str(tmp_path / "sft"),)


def test_an_explicit_ref_model_is_the_reference_and_simpo_has_none(tmp_path):
    run = Run.load(make_run(tmp_path / "a", ref_model="hub/ref-model"))
    assert run.reference() == ModelSpec("hub/ref-model", (), "full", "default")
    assert Run.load(make_run(tmp_path / "b", pref_loss="simpo")).reference() is None


def test_a_run_without_final_weights_is_refused_with_the_way_out(tmp_path):
    out = make_run(tmp_path, weights=None)
    with pytest.raises(UserError) as caught:
        Run.load(out).policy()
    assert str(caught.value) == (
        f"{out} holds no final model (model weights (model.safetensors or pytorch_model.bin) is missing): the run "
        "has not finished; finish it with `dpo-launch train CONFIG --resume`, or evaluate a checkpoint's weights "
        "as a MODEL")


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(UserError) as caught:
        Run.load(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} is not a dpo-launch run directory: {tmp_path}/dpo-launch/resolved_config.json is missing (pass "
        "the output_dir of a run started with `dpo-launch train`)")


def test_model_or_run_names_a_run_a_config_an_adapter_a_model_folder_or_a_hub_id(tmp_path, monkeypatch):
    out = make_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert model_source("out").model == str(out)
    (tmp_path / "c.yaml").write_text("model_name_or_path: base\ntemplate: qwen\n")
    assert model_source("c.yaml") == ModelSpec(str(tmp_path / "base"), (), "full", "qwen")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    assert model_source("adapter") == ModelSpec("org/base", (str(tmp_path / "adapter"),), "lora")
    assert model_source("base", template="default") == ModelSpec(str(tmp_path / "base"), template="default")
    assert model_source("org/model") == ModelSpec("org/model")
