"""Keys from TRL and AutoTrain guides get the LLaMA-Factory key that means the same, and `--config_file`
(accepted, as the guides write it) gets the form `llamafactory-cli train` 0.9.5 can run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launcher.check.config_schema import unknown_key_text
from launcher.check.other_names import LEGACY_KEYS, OTHER_NAMES
from launcher.check.schemas import lf_properties, not_settable

from support.cli import cli_env, run_main
from support.workspaces import CONFIG_ONLY


def test_no_other_tools_name_is_a_llamafactory_key_and_every_suggestion_is_one():
    properties = lf_properties()

    assert [name for name in {**OTHER_NAMES, **LEGACY_KEYS} if name in properties or name in not_settable()] == []
    assert [(name, other.key) for name, other in OTHER_NAMES.items()
            if other.key is not None and other.key not in properties] == []


@pytest.mark.parametrize(("name", "expected"), [
    ("epochs", ("'epochs' is an AutoTrain LLM parameter, not a LLaMA-Factory key",
                "did you mean 'num_train_epochs'?")),
    ("lr", ("'lr' is an AutoTrain LLM parameter, not a LLaMA-Factory key", "did you mean 'learning_rate'?")),
    ("batch_size", ("'batch_size' is an AutoTrain LLM parameter, not a LLaMA-Factory key",
                    "did you mean 'per_device_train_batch_size'?")),
    ("peft", ("'peft' is an AutoTrain LLM parameter, not a LLaMA-Factory key",
              "did you mean 'finetuning_type'? write finetuning_type: lora")),
    ("model_ref", ("'model_ref' is an AutoTrain LLM parameter, not a LLaMA-Factory key", "did you mean 'ref_model'?")),
    ("beta", ("'beta' is a TRL DPOConfig/KTOConfig name, not a LLaMA-Factory key", "did you mean 'pref_beta'?")),
    ("max_prompt_length", ("'max_prompt_length' is a TRL and AutoTrain name, not a LLaMA-Factory key",
                           "did you mean 'cutoff_len'? LLaMA-Factory has one length for prompt and response")),
    ("precompute_ref_log_probs", ("'precompute_ref_log_probs' is a TRL DPOConfig/KTOConfig name, not a "
                                  "LLaMA-Factory key", "LLaMA-Factory has no equivalent; delete it")),
    ("load_in_4bit", ("'load_in_4bit' is a TRL ModelConfig or script argument, not a LLaMA-Factory key",
                      "did you mean 'quantization_bit'? write quantization_bit: 4")),
])
def test_names_from_trl_and_autotrain_get_the_llamafactory_key_not_the_closest_spelling(name, expected):
    assert unknown_key_text(name, lf_properties(), "dpo") == expected


def test_a_plain_typo_still_gets_the_closest_spelling():
    assert unknown_key_text("pref_betaa", lf_properties(), "dpo") == (
        "'pref_betaa' is not a key of a dpo config", "did you mean 'pref_beta'?")


def test_validate_with_config_file_warns_that_llamafactory_cli_fails_and_gives_the_form_that_works(tmp_path):
    (tmp_path / "my config.yaml").write_text(CONFIG_ONLY)

    result = run_main("validate", "--config_file", "my config.yaml", "pref_beta=0.2", "--no-data", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == (
        "<command line>: warning[config-file-flag]: --config_file works with dpo-launch, but `llamafactory-cli "
        "train --config_file 'my config.yaml'` fails in LLaMA-Factory 0.9.5 with \"Please provide "
        "`model_name_or_path`.\": it reads a config only as the first argument (run it as `llamafactory-cli train "
        "'my config.yaml' pref_beta=0.2`)")


def test_validate_with_the_config_as_first_argument_has_no_such_warning(tmp_path):
    (tmp_path / "config.yaml").write_text(CONFIG_ONLY)

    result = run_main("validate", "config.yaml", "--no-data", cwd=tmp_path)

    assert "config-file-flag" not in result.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_llamafactory_cli_itself_fails_on_config_file_as_the_warning_says(tmp_path):
    pytest.importorskip("llamafactory")
    (tmp_path / "config.yaml").write_text(CONFIG_ONLY)
    cli = Path(sys.executable).with_name("llamafactory-cli")

    result = subprocess.run([str(cli), "train", "--config_file", "config.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env=cli_env(DISABLE_VERSION_CHECK="1"))

    assert result.returncode != 0
    assert result.stderr.splitlines()[-1] == "ValueError: Please provide `model_name_or_path`."
