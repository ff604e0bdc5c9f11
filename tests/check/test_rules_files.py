"""Rules about files a config points at: model/adapter paths, paths outside the working tree, the DeepSpeed JSON."""

from __future__ import annotations

import json

import pytest
from test_rules import BASE, codes, diagnose, make_workspace, rendered

from launcher.check.rules.paths import looks_local

from support.cli import REPO


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    return make_workspace(tmp_path, monkeypatch)


def test_a_hub_id_gets_a_not_checked_offline_note_and_a_missing_local_path_an_error(workspace):
    text = BASE.replace("models/base", "meta-llama/Meta-Llama-3-8B-Instruct") + "ref_model: ./models/missing\n"

    assert rendered(workspace, text) == [
        "config.yaml:1:21: note[hub-id-not-checked]: model_name_or_path: 'meta-llama/Meta-Llama-3-8B-Instruct' "
        "looks like a hub id and is not a local path; not checked offline",
        f"config.yaml:9:12: error[model-path-not-found]: ref_model: local model directory './models/missing' does "
        f"not exist (resolved from {workspace}) (relative paths resolve from the directory you launch in, as in "
        "LLaMA-Factory; fix the path or run from the right directory)"]


@pytest.mark.parametrize("value, local", [
    ("meta-llama/Meta-Llama-3-8B-Instruct", False), ("gpt2", False), ("./gpt2", True), ("../m", True),
    ("/abs/m", True), ("~/m", True), (".demo/tiny-llama", True), ("a/b/c", True), ("models/other", True),
])
def test_values_that_look_local_are_explicit_paths_invalid_hub_ids_or_partially_existing(workspace, value, local):
    assert looks_local(value, workspace) is local


def test_a_model_directory_without_config_json_is_an_error_that_spots_an_adapter(workspace):
    (workspace / "sft").mkdir()
    (workspace / "sft" / "adapter_config.json").write_text("{}")

    lines = rendered(workspace, BASE.replace("models/base", "sft"))

    assert lines == [
        "config.yaml:1:21: error[model-config-missing]: model_name_or_path: 'sft' has no config.json, so it is not a "
        "model directory (it holds a LoRA adapter: set adapter_name_or_path to it and model_name_or_path to its base "
        'model; LLaMA-Factory stops with "OSError: Failed to load tokenizer.")']


def test_adapter_directories_need_adapter_config_json_and_tilde_is_not_expanded(workspace):
    (workspace / "sft").mkdir()
    text = BASE + "adapter_name_or_path: sft,~/adapters/b\n"

    errors = [code for code in codes(workspace, text) if code[0] == "error"]

    assert errors == [("error", "adapter-config-missing"), ("error", "path-tilde")]


def test_trust_remote_code_warns_that_it_runs_code_from_the_model_repository(workspace):
    assert rendered(workspace, BASE + "trust_remote_code: true\n") == [
        "config.yaml:9:20: warning[trust-remote-code]: trust_remote_code: true executes Python code from the model "
        "repository (its modeling and tokenizer files) with your permissions, for the policy and for the reference "
        "model (keep it only for a model whose code you have read or trust, and pin model_revision to a commit)"]


def test_relative_paths_that_climb_out_of_the_working_tree_warn_and_absolute_ones_do_not(workspace):
    # An absolute path says exactly where; `../x` means somewhere else from every other directory.
    outside = workspace.parent / f"{workspace.name}-elsewhere"
    (outside / "model").mkdir(parents=True)
    (outside / "model" / "config.json").write_text("{}")
    text = BASE.replace("models/base", str(outside / "model")).replace("output_dir: out", "output_dir: ../x; rm -rf ~")

    found = [(d.code, d.path) for d in diagnose(workspace, text + "dataset_dir: $(whoami)/../../data\n")]

    assert found == [("path-outside-working-tree", "dataset_dir"), ("path-outside-working-tree", "output_dir")]
    assert [line for line in rendered(workspace, text) if "path-outside" in line] == [
        f"config.yaml:6:13: warning[path-outside-working-tree]: output_dir: '../x; rm -rf ~' is relative and climbs "
        f"out of the working tree ({workspace}): it resolves against the directory the command runs in, so from here "
        f"the job writes to {workspace.parent / 'x; rm -rf ~'}, and from any other directory somewhere else (use an "
        "absolute path for a location outside the project, or a path inside it)"]
    assert "path-outside-working-tree" not in {d.code for d in diagnose(workspace, BASE.replace(
        "output_dir: out", f"output_dir: {outside / 'out'}"))}


@pytest.mark.parametrize("output_dir, where", [("models/base", "is"), ("models", "contains"),
                                               ("./models/", "contains")])
def test_an_output_dir_that_is_or_contains_the_model_it_trains_is_an_error(workspace, output_dir, where):
    lines = rendered(workspace, BASE.replace("output_dir: out", f"output_dir: {output_dir}"))

    assert lines == [
        f"config.yaml:6:13: error[output-dir-holds-input]: output_dir: '{output_dir}' {where} model_name_or_path "
        f"'models/base' ({workspace / 'models/base'}): training writes checkpoints and weights into output_dir, and "
        "--overwrite removes what it finds there (choose an output_dir outside every model and adapter the run reads)"]


def test_an_adapter_or_reference_model_inside_output_dir_is_an_error_and_a_sibling_folder_is_not(workspace):
    (workspace / "out" / "sft").mkdir(parents=True)
    (workspace / "out" / "sft" / "adapter_config.json").write_text("{}")
    (workspace / "outside").mkdir()
    (workspace / "outside" / "config.json").write_text("{}")
    text = BASE + "adapter_name_or_path: out/sft\nref_model: outside\n"

    found = [(d.code, d.message.split(" (")[0]) for d in diagnose(workspace, text) if d.severity == "error"]

    assert found == [("output-dir-holds-input", "output_dir: 'out' contains adapter_name_or_path 'out/sft'")]


# --- DeepSpeed ---------------------------------------------------------------------------------------------

def with_deepspeed(workspace, config: dict | str, text: str = BASE) -> str:
    (workspace / "ds.json").write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
    return text + "deepspeed: ds.json\n"


def test_a_deepspeed_config_that_does_not_parse_is_an_error_at_its_line_and_column(workspace):
    text = with_deepspeed(workspace, '{\n  "zero_optimization": {"stage": 2,}\n}\n')

    assert rendered(workspace, text)[0] == (
        "ds.json:2:36: error[deepspeed-config-invalid]: DeepSpeed config is not valid JSON: Expecting property name "
        "enclosed in double quotes (DeepSpeed configs are strict JSON: no comments, no trailing commas)")


def test_a_missing_deepspeed_config_is_an_error(workspace):
    assert codes(workspace, BASE + "deepspeed: ds_missing.json\n")[0] == ("error", "deepspeed-config-not-found")


def test_optimizer_and_scheduler_blocks_in_the_deepspeed_config_warn_at_the_block(workspace):
    text = with_deepspeed(workspace, {"optimizer": {"type": "AdamW"}, "scheduler": {"type": "WarmupLR"}})

    found = [(d.code, d.file, d.line) for d in diagnose(workspace, text) if d.severity == "warning"]

    assert found == [("deepspeed-optimizer-block", "ds.json", 2), ("deepspeed-scheduler-block", "ds.json", 5)]


def test_hard_coded_deepspeed_values_that_disagree_with_the_config_are_errors(workspace):
    ds = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": "auto", "train_batch_size": 20,
          "bf16": {"enabled": True}, "zero_optimization": {"stage": 3}}
    lines = [line for line in rendered(workspace, with_deepspeed(workspace, ds)) if "error[" in line]

    assert lines == [
        "ds.json:2:3: error[deepspeed-value-mismatch]: DeepSpeed train_micro_batch_size_per_gpu is 4 but the "
        "config's per_device_train_batch_size is 8 (set it to \"auto\" (the presets do) or make them agree; "
        "transformers stops with \"Please correct the following DeepSpeed config values that mismatch "
        "TrainingArguments values: - ds train_micro_batch_size_per_gpu=4 vs hf per_device_train_batch_size=8\")",
        "ds.json:6:5: error[deepspeed-value-mismatch]: DeepSpeed bf16.enabled is true but the config's "
        "bf16|bf16_full_eval is false (set it to \"auto\" (the presets do) or make them agree; transformers stops "
        "with \"Please correct the following DeepSpeed config values that mismatch TrainingArguments values: - ds "
        "bf16.enabled=True vs hf bf16|bf16_full_eval=False\")",
        "ds.json:4:3: error[deepspeed-value-mismatch]: DeepSpeed train_batch_size is 20, not a multiple of "
        "per_device_train_batch_size x gradient_accumulation_steps = 8, so no number of processes matches it (set "
        "it to \"auto\"; transformers stops with \"Please correct the following DeepSpeed config values that "
        "mismatch TrainingArguments values\")"]


def test_a_hard_coded_train_batch_size_notes_the_world_size_it_fixes(workspace):
    found = codes(workspace, with_deepspeed(workspace, {"train_batch_size": 64, "zero_optimization": {"stage": 3}}))

    assert ("note", "deepspeed-fixed-world-size") in found


@pytest.mark.parametrize("preset", sorted((REPO / "config" / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_the_shipped_deepspeed_presets_agree_with_a_bf16_config(workspace, preset):
    text = with_deepspeed(workspace, preset.read_text(), BASE + "bf16: true\n")

    assert [d.render() for d in diagnose(workspace, text) if d.severity != "note"] == []


def test_full_dpo_on_zero2_notes_that_the_reference_is_a_full_replica_per_gpu(workspace):
    full = BASE.replace("finetuning_type: lora", "finetuning_type: full")

    def notes(stage: int, text: str) -> list:
        config = with_deepspeed(workspace, {"zero_optimization": {"stage": stage}}, text)
        return [code for severity, code in codes(workspace, config) if severity == "note"]

    assert "reference-full-replica" in notes(2, full)
    assert "reference-full-replica" not in notes(3, full)
    assert "reference-full-replica" not in notes(2, BASE)


def test_zero3_rejects_pure_bf16_unsloth_and_several_adapters(workspace):
    text = with_deepspeed(workspace, {"zero_optimization": {"stage": 3}},
                          BASE + "pure_bf16: true\nuse_unsloth: true\nref_model: models/base\n"
                          "ref_model_adapters: org/a,org/b\n")

    found = [(d.code, d.path) for d in diagnose(workspace, text) if d.severity == "error"]

    assert found == [("zero3-incompatible", "pure_bf16"), ("zero3-incompatible", "use_unsloth"),
                     ("zero3-multiple-adapters", "ref_model_adapters")]


def test_an_inline_deepspeed_mapping_is_checked_at_the_deepspeed_key(workspace):
    text = BASE + "deepspeed:\n  optimizer: {type: AdamW}\n  zero_optimization: {stage: 3}\n"

    found = [(d.code, d.file, d.line) for d in diagnose(workspace, text) if d.severity == "warning"]

    assert found == [("deepspeed-optimizer-block", "config.yaml", 10)]


def test_galore_with_deepspeed_is_an_error(workspace):
    full = BASE.replace("finetuning_type: lora", "finetuning_type: full")
    text = with_deepspeed(workspace, {}, full + "use_galore: true\n")

    assert ("error", "galore-apollo-with-deepspeed") in codes(workspace, text)


def test_rules_never_crash_on_random_configs_with_unusable_paths(workspace):
    """A seeded fuzz: NUL bytes, names too long for the OS, symlink loops, wrong types, broken DeepSpeed JSON."""
    import random

    from launcher.check.config import LoadedConfig
    from launcher.check.rules.registry import check_rules

    (workspace / "loop").symlink_to(workspace / "loop")
    (workspace / "ds_bad.json").write_text("[1,")
    (workspace / "ds_odd.json").write_text('{"train_batch_size": 0, "optimizer": {"params": {"betas": "x"}}}')
    paths = ["a\x00b", "./a\x00b", "/" + "a" * 5000, "./" + "b" * 300 + "/c", "loop/x", "../..", "ds_bad.json",
             "ds_odd.json", "models", "org/name", "~/x", ""]
    keys = ["model_name_or_path", "ref_model", "adapter_name_or_path", "ref_model_adapters", "deepspeed", "output_dir",
            "dataset_dir", "stage", "pref_loss", "finetuning_type", "quantization_bit", "create_new_adapter",
            "do_train"]
    others = [None, True, 3, 0.5, ["a", 1], {"zero_optimization": {"stage": 3}}, "dpo", "kto", "simpo", "lora", "full"]
    rng = random.Random(20240601)
    for _ in range(300):
        values = {key: rng.choice(paths + others) for key in rng.sample(keys, rng.randint(1, len(keys)))}
        found = check_rules(LoadedConfig(workspace / "config.yaml", values), workspace)
        assert all(diagnostic.file for diagnostic in found), values
