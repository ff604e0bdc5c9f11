"""What a config needs from the machine (launcher/lf/requirements.py), and how validate notes it."""

from __future__ import annotations

import pytest

from launcher.lf.deepspeed import ZeroSettings
from launcher.lf.requirements import hardware_needs, package_needs

from support.cli import run_main

NO_DS = ZeroSettings(None)


def needed(config: dict, zero: ZeroSettings = NO_DS) -> list[tuple[str, str]]:
    return [(need.key, need.package.install()) for need in package_needs(config, zero)]


@pytest.mark.parametrize(("config", "expected"), [
    ({"use_unsloth": True}, [("use_unsloth", "pip install unsloth")]),
    ({"enable_liger_kernel": True}, [("enable_liger_kernel", "pip install liger-kernel")]),
    ({"use_galore": True, "use_apollo": True, "use_badam": True, "use_adam_mini": True},
     [("use_galore", "pip install galore-torch"), ("use_apollo", "pip install apollo-torch"),
      ("use_badam", "pip install 'badam>=1.2.1'"), ("use_adam_mini", "pip install adam-mini")]),
    ({"use_muon": True}, []),  # LLaMA-Factory bundles Muon
    ({"report_to": "wandb"}, [("report_to", "pip install wandb")]),
    ({"report_to": ["tensorboard", "mlflow", "swanlab", "comet_ml"]},
     [("report_to", "pip install mlflow"), ("report_to", "pip install swanlab"),
      ("report_to", "pip install 'comet-ml>=3.43.2'")]),
    ({"report_to": "none"}, []),
    ({"optim": "adamw_8bit"}, [("optim", "pip install bitsandbytes")]),
    ({"optim": "paged_adamw_32bit"}, [("optim", "pip install bitsandbytes")]),
    ({"optim": "galore_adamw_8bit"}, [("optim", "pip install bitsandbytes"), ("optim", "pip install galore-torch")]),
    ({"optim": "adamw_torch_8bit"}, [("optim", "pip install 'torchao>=0.4.0'")]),
    ({"optim": "adamw_torch"}, []),
    ({"quantization_bit": 8}, [("quantization_bit", "pip install 'bitsandbytes>=0.37.0'")]),
    ({"quantization_bit": 4, "quantization_method": "hqq"}, [("quantization_bit", "pip install hqq")]),
    ({"ref_model_quantization_bit": 4}, [("ref_model_quantization_bit", "pip install 'bitsandbytes>=0.39.0'")]),
    ({"flash_attn": "fa2"}, [("flash_attn", "pip install 'flash-attn>=2.3.3'"),
                             ("flash_attn", "pip install transformers==5.5.4")]),
    ({"flash_attn": "sdpa", "mixture_of_depths": "convert"},
     [("mixture_of_depths", "pip install 'mixture-of-depth>=1.1.6'")]),
])
def test_each_setting_needs_the_packages_llamafactory_and_transformers_import_for_it(config, expected):
    assert needed(config) == expected


def test_4_bit_quantization_under_zero3_needs_a_newer_bitsandbytes():
    assert needed({"quantization_bit": 4}, ZeroSettings(3)) == [
        ("quantization_bit", "pip install 'bitsandbytes>=0.43.0'")]


def test_bf16_and_fa2_need_ampere_fp16_and_quantization_need_any_cuda_gpu():
    needs = hardware_needs({"bf16": True, "fp16": True, "flash_attn": "fa2", "quantization_bit": 4})

    assert [(need.key, need.compute_capability) for need in needs] == [
        ("bf16", (8, 0)), ("fp16", None), ("flash_attn", (8, 0)), ("quantization_bit", None)]
    assert all(need.cuda for need in needs)


def test_validate_notes_what_the_machine_must_have_and_how_to_install_it(tmp_path):
    (tmp_path / "config.yaml").write_text("model_name_or_path: org/model\nstage: dpo\ndo_train: true\ndataset: d\n"
                                          "output_dir: out\nreport_to: [tensorboard, wandb]\nuse_unsloth: true\n"
                                          "optim: adamw_8bit\n")

    result = run_main("validate", "config.yaml", "--no-data", cwd=tmp_path)

    checked = "checked by `dpo-launch train` on the machine that runs the job, not by validate"
    assert result.returncode == 0
    assert [line for line in result.stdout.splitlines() if "machine-" in line] == [
        f"config.yaml:6:12: note[machine-package]: report_to: wandb needs wandb ({checked}; install with "
        "`pip install wandb`)",
        f"config.yaml:7:14: note[machine-package]: use_unsloth: true needs unsloth ({checked}; install with "
        "`pip install unsloth`)",
        f"config.yaml:8:8: note[machine-package]: optim: adamw_8bit needs bitsandbytes ({checked}; install with "
        "`pip install bitsandbytes`)"]
