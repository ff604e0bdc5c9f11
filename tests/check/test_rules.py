"""The DPO/KTO rules of `validate` (launcher/rules*.py): LLaMA-Factory's cross-field checks and the advice.

Each test writes a small config into a temporary working directory and runs `load_config` + `check_rules`
directly (no subprocess); a few compare the rendered lines users read in full.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.check.config import load_config
from launcher.check.diagnostics import ERROR, Diagnostic
from launcher.check.rules.registry import check_rules

from support.cli import run_main

# A valid LoRA DPO config whose model is a local directory with a config.json (created by `workspace`).
BASE = """\
model_name_or_path: models/base
stage: dpo
do_train: true
finetuning_type: lora
dataset: demo
output_dir: out
report_to: tensorboard
learning_rate: 5.0e-6
"""


def make_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding models/base/config.json, made the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "config.json").write_text("{}")
    return tmp_path


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_workspace(tmp_path, monkeypatch)


def diagnose(workspace: Path, text: str, name: str = "config.yaml", overrides: tuple = ()):
    (workspace / name).write_text(text)
    return check_rules(load_config(name, overrides), workspace)


def rendered(workspace: Path, text: str, **kwargs) -> list[str]:
    return [d.render() for d in diagnose(workspace, text, **kwargs)]


def codes(workspace: Path, text: str, **kwargs) -> list[tuple[str, str]]:
    return [(d.severity, d.code) for d in diagnose(workspace, text, **kwargs)]


def test_a_valid_lora_dpo_config_gets_no_rule_diagnostics(workspace):
    assert rendered(workspace, BASE) == []


def test_label_smoothing_with_a_non_sigmoid_loss_is_an_error_that_quotes_llamafactory(workspace):
    lines = rendered(workspace, BASE + "pref_loss: sigmoid\ndpo_label_smoothing: 0.1\n", overrides=("pref_loss=ipo",))

    assert lines[0] == (
        "config.yaml:10:22: error[label-smoothing-needs-sigmoid]: dpo_label_smoothing: 0.1 applies only to "
        "pref_loss: sigmoid, but pref_loss is 'ipo' (remove dpo_label_smoothing or use pref_loss: sigmoid; "
        'LLaMA-Factory stops with "`dpo_label_smoothing` is only valid for sigmoid loss function.")')


def test_finetuning_method_conflicts_are_all_reported_at_once(workspace):
    text = BASE.replace("finetuning_type: lora", "finetuning_type: full") + (
        "use_llama_pro: true\nuse_galore: true\nuse_badam: true\nuse_dora: true\nloraplus_lr_ratio: 16.0\n")

    found = [code for code in codes(workspace, text) if code[0] == ERROR]

    assert found == [
        ("error", "llama-pro-needs-freeze-or-lora"),
        ("error", "galore-apollo-badam-together"),
        ("error", "lora-only-option"),  # loraplus_lr_ratio
        ("error", "lora-only-option"),  # use_dora
    ]


def test_lora_with_galore_and_pissa_with_a_reference_loss_are_errors(workspace):
    found = codes(workspace, BASE + "use_apollo: true\npissa_init: true\n")

    assert found == [("error", "lora-with-galore-apollo-badam"), ("error", "pissa-with-reference"),
                     ("note", "machine-package")]  # apollo-torch: checked where the job runs
    assert codes(workspace, BASE + "pissa_init: true\npref_loss: simpo\npref_beta: 2.5\n") == []


def test_data_argument_conflicts_mirror_llamafactory_data_args(workspace):
    text = BASE + ("eval_dataset: held_out\nval_size: 0.1\ninterleave_probs: 0.5,0.5\nstreaming: true\n"
                   "max_samples: 100\nmask_history: true\ntrain_on_prompt: true\n")

    found = [code for _, code in codes(workspace, text)]

    assert found == ["val-size-with-eval-dataset", "interleave-probs-with-concat", "streaming-val-size-fraction",
                     "streaming-max-samples", "mask-history-with-train-on-prompt", "sft-only-option",
                     "sft-only-option", "streaming-needs-max-steps"]


def test_interleave_probs_must_match_the_number_of_datasets(workspace):
    text = BASE.replace("dataset: demo", "dataset: [a, b, c]")
    text += "mix_strategy: interleave_under\ninterleave_probs: 0.5,0.5\n"

    assert rendered(workspace, text) == [
        "config.yaml:10:19: error[interleave-probs-length]: interleave_probs has 2 values but dataset names 3 "
        "datasets (give one probability per dataset, in the same order; LLaMA-Factory stops with \"The length of "
        'dataset and interleave probs should be identical.")']


def test_inverted_pixel_bounds_are_an_error_also_against_the_default_minimum(workspace):
    assert codes(workspace, BASE + "image_max_pixels: 100\n") == [("error", "pixels-max-below-min")]
    assert codes(workspace, BASE + "video_min_pixels: 70000\n") == [("error", "pixels-max-below-min")]


def test_sft_only_options_are_errors_for_dpo_and_kto(workspace):
    lines = rendered(workspace, BASE.replace("stage: dpo", "stage: kto") + "neat_packing: true\n")

    assert lines == [
        "config.yaml:9:15: error[sft-only-option]: neat_packing: true applies only to stage: sft but stage is 'kto' "
        '(remove neat_packing; LLaMA-Factory stops with "`neat_packing` cannot be set as True except SFT.")']


def test_training_and_evaluation_need_their_data(workspace):
    text = BASE.replace("dataset: demo\n", "") + "eval_strategy: steps\n"

    assert codes(workspace, text) == [("error", "train-without-dataset"), ("error", "eval-without-eval-data")]
    assert codes(workspace, BASE + "eval_strategy: steps\nval_size: 0.05\n") == []


def test_quantized_models_accept_only_lora_or_oft_and_a_single_adapter(workspace):
    (workspace / "sft_a").mkdir()
    (workspace / "sft_a" / "adapter_config.json").write_text("{}")
    (workspace / "sft_b").mkdir()
    (workspace / "sft_b" / "adapter_config.json").write_text("{}")
    text = BASE + ("quantization_bit: 4\nresize_vocab: true\nadapter_name_or_path: sft_a,sft_b\n"
                   "create_new_adapter: true\nquantization_device_map: auto\nfp8: true\n")

    found = [(severity, code) for severity, code in codes(workspace, text) if severity == ERROR]

    assert found == [("error", "quantization-device-map-in-training"), ("error", "fp8-with-quantization"),
                     ("error", "quantized-model-limit"), ("error", "quantized-model-limit"),
                     ("error", "quantized-model-limit")]


def test_an_adapter_or_quantization_on_full_fine_tuning_is_an_error(workspace):
    text = BASE.replace("finetuning_type: lora", "finetuning_type: full")
    text += "adapter_name_or_path: org/sft\nquantization_bit: 8\n"

    found = [code for severity, code in codes(workspace, text) if severity == ERROR]

    assert found == ["adapter-needs-lora", "quantization-needs-lora-or-oft"]


def test_inference_backends_and_precision_conflicts_are_errors(workspace):
    text = BASE + "infer_backend: vllm\nfp16: true\nbf16: true\nload_best_model_at_end: true\n"

    found = [code for severity, code in codes(workspace, text) if severity == ERROR]

    assert found == ["infer-backend-in-training", "fp16-and-bf16", "best-model-strategy-mismatch"]


def test_dpo_evaluation_without_a_reference_warns_as_llamafactory_does(workspace):
    text = BASE.replace("do_train: true", "do_train: false") + "do_eval: true\neval_dataset: held_out\n"

    assert codes(workspace, text) == [("warning", "eval-without-reference")]


def test_machine_dependent_settings_are_notes_not_errors(workspace):
    text = BASE + "bf16: true\nflash_attn: fa2\nquantization_bit: 4\n"

    assert codes(workspace, text) == [("note", "machine-precision"), ("note", "machine-flash-attention"),
                                      ("note", "machine-quantization")]


@pytest.mark.parametrize("key", [
    "stage", "finetuning_type", "pref_loss", "pref_beta", "simpo_gamma", "dpo_label_smoothing", "dataset",
    "eval_dataset", "val_size", "interleave_probs", "mix_strategy", "streaming", "max_samples", "max_steps",
    "learning_rate", "num_train_epochs", "report_to", "model_name_or_path", "ref_model", "adapter_name_or_path",
    "ref_model_adapters", "deepspeed", "quantization_bit", "do_train", "eval_strategy", "create_new_adapter",
    "trust_remote_code", "output_dir", "dataset_dir", "image_max_pixels", "per_device_train_batch_size",
    "gradient_accumulation_steps", "bf16", "flash_attn", "use_galore", "pissa_init", "loraplus_lr_ratio",
])
def test_rules_skip_values_of_the_wrong_type_instead_of_crashing(workspace, key):
    """The schema reports a wrong type; a rule that reads the key must skip it, not raise, and whatever the
    rules still say is a well-formed diagnostic located in the config or on the command line."""
    for value in ("'x; rm -rf ~'", "3", "-1.5", "true", "[1, {a: 2}]", "{a: [1]}", "''", "null", ".nan"):
        found = diagnose(workspace, BASE + "deepspeed: config/deepspeed/ds_z3_config.json\n",
                         overrides=(f"{key}={value}",))
        malformed = [d for d in found if not (isinstance(d, Diagnostic) and d.severity in ("error", "warning", "note")
                                             and d.code and d.message and d.file in ("config.yaml", "<command line>"))]
        assert malformed == [], (value, malformed)


# --- end to end: `dpo-launch validate` runs these rules after the schema ------------------------------------

def test_validate_reports_rule_errors_and_warnings_in_file_order_and_exits_1(workspace):
    (workspace / "config.yaml").write_text(BASE + "pref_loss: ipo\ndpo_label_smoothing: 0.1\n")

    result = run_main("validate", "config.yaml", "--no-data", cwd=workspace)

    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.splitlines() == [
        "config.yaml:9:12: warning[loss-silently-sigmoid]: pref_loss: 'ipo' silently trains the sigmoid loss under "
        "`llamafactory-cli train` with the installed trl (>= 0.20): LLaMA-Factory passes no loss_type to trl's "
        "dpo_loss, which then defaults to sigmoid (launch with `dpo-launch train`, which runs ipo as itself and "
        "checks it on the first batch)",
        "config.yaml:10:22: error[label-smoothing-needs-sigmoid]: dpo_label_smoothing: 0.1 applies only to "
        "pref_loss: sigmoid, but pref_loss is 'ipo' (remove dpo_label_smoothing or use pref_loss: sigmoid; "
        'LLaMA-Factory stops with "`dpo_label_smoothing` is only valid for sigmoid loss function.")',
        "✗ 1 error, 1 warning in config.yaml"]


def test_validate_accepts_a_config_whose_rules_only_warn_or_note(workspace):
    (workspace / "config.yaml").write_text(BASE + "pref_loss: hinge\nbf16: true\n")

    result = run_main("validate", "config.yaml", "--no-data", cwd=workspace)

    assert (result.returncode, result.stdout.splitlines()[-1]) == (0, "✓ 0 errors, 1 warning, 1 note in config.yaml")


def test_validate_json_output_locates_rule_diagnostics_in_the_deepspeed_file(workspace):
    (workspace / "ds.json").write_text('{\n  "optimizer": {"type": "AdamW"}\n}\n')
    (workspace / "config.yaml").write_text(BASE + "deepspeed: ds.json\n")

    result = run_main("validate", "config.yaml", "--no-data", "--format", "json", cwd=workspace)
    diagnostics = json.loads(result.stdout)["diagnostics"]
    found = [(d["code"], d["file"], d["line"], d["column"], d["path"]) for d in diagnostics]

    assert result.returncode == 0
    assert ("deepspeed-optimizer-block", "ds.json", 2, 3, "optimizer") in found
