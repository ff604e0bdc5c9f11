"""What a config needs from the machine that runs it: packages (with versions) and GPU capabilities.

Facts about LLaMA-Factory 0.9.5 and its stack, as data; `validate` notes them (the config may run elsewhere)
and `dpo-launch train` checks them where the job runs, before it starts anything (launcher/run/preflight.py).
Sources: LF hparams/parser.py `_check_extra_dependencies` (unsloth, liger-kernel, GaLore, APOLLO, BAdam,
Adam-mini, SwanLab), model/model_utils/quantization.py (bitsandbytes versions per bit
width), model/model_utils/attention.py (fa2 falls back silently when flash-attn is missing); transformers
trainer_optimizer.py (optimizer packages), integrations/integration_utils.py (report_to packages),
utils/import_utils.py `is_flash_attn_2_available` (flash-attn >= 2.3.3), integrations/flash_attention.py
(5.6.0 crashes, huggingface/transformers#45588). `use_muon` needs nothing: LF bundles Muon (third_party/muon);
`use_kt` (KTransformers) is cleared by the launch (launcher.plan.launch REROUTING_SWITCHES) and not covered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launcher.lf.deepspeed import ZeroSettings
from launcher.lf.settings import setting, split_arg

AMPERE = (8, 0)
# transformers 5.6.0's flash_attention_forward calls `s_aux.to(...)` on None for every model without attention
# sinks (huggingface/transformers#45588, hiyouga/LlamaFactory#10610); 5.5.4 and 5.7.0 do not.
FA2_BROKEN_TRANSFORMERS = ("5.6.0",)
FA2_TRANSFORMERS_FIX = "pip install transformers==5.5.4"


@dataclass(frozen=True)
class Package:
    distribution: str  # the name pip and importlib.metadata use
    module: str  # the import name importlib.util.find_spec looks for
    minimum: str | None = None
    broken: tuple[str, ...] = ()  # versions known to fail for this use
    fix: str | None = None  # the install command, when not `pip install distribution>=minimum`

    @property
    def wanted(self) -> str:
        if self.broken:
            return f"{self.distribution} other than {', '.join(self.broken)}"
        return f"{self.distribution} >= {self.minimum}" if self.minimum else self.distribution

    def install(self) -> str:
        if self.fix:
            return self.fix
        return f"pip install '{self.distribution}>={self.minimum}'" if self.minimum else \
            f"pip install {self.distribution}"


@dataclass(frozen=True)
class Need:
    """One thing a config setting needs: a package, or a CUDA GPU (of at least a compute capability)."""

    key: str  # the config key that asks for it
    setting: str  # how the setting reads, e.g. "quantization_bit: 4"
    why: str  # who needs it and what happens without it
    package: Package | None = None
    cuda: bool = False
    compute_capability: tuple[int, int] | None = None


def _pkg(distribution: str, module: str | None = None, minimum: str | None = None) -> Package:
    return Package(distribution, module or distribution.replace("-", "_"), minimum)


BITSANDBYTES = "bitsandbytes"
# LF _check_extra_dependencies: flag -> the package it checks ("mandatory").
LF_FLAG_PACKAGES = {
    "use_unsloth": _pkg("unsloth"),
    "enable_liger_kernel": _pkg("liger-kernel"),
    "use_galore": _pkg("galore-torch"),
    "use_apollo": _pkg("apollo-torch"),
    "use_badam": _pkg("badam", minimum="1.2.1"),
    "use_adam_mini": _pkg("adam-mini"),
    "use_swanlab": _pkg("swanlab"),
}  # plot_loss's matplotlib is one of LLaMA-Factory's own dependencies
MIXTURE_OF_DEPTHS = Package("mixture-of-depth", "MoD", "1.1.6")
# transformers' report_to integrations -> what each imports (integration_utils.py is_*_available). tensorboard is
# part of the training stack (pyproject's train extra), and `dpo-launch train` adds it to report_to itself.
REPORT_TO_PACKAGES = {
    "wandb": (_pkg("wandb"),), "mlflow": (_pkg("mlflow"),), "swanlab": (_pkg("swanlab"),),
    "comet_ml": (_pkg("comet-ml", "comet_ml", "3.43.2"),), "neptune": (_pkg("neptune"),),
    "clearml": (_pkg("clearml"),), "dagshub": (_pkg("dagshub"), _pkg("mlflow")), "dvclive": (_pkg("dvclive"),),
    "codecarbon": (_pkg("codecarbon"),), "trackio": (_pkg("trackio"),),
    "flyte": (_pkg("flytekit"), _pkg("flytekitplugins-deck", "flytekitplugins.deck")),
    "azure_ml": (_pkg("azureml-core", "azureml.core"),),
}
# transformers trainer_optimizer.py: optim -> the package its optimizer comes from.
_OPTIM_PACKAGES = (
    (("adamw_bnb_8bit", "adamw_8bit", "paged_", "ademamix", "lion_", "rmsprop_bnb", "galore_adamw_8bit"),
     (_pkg(BITSANDBYTES),)),
    (("galore_",), (_pkg("galore-torch"),)),
    (("apollo_",), (_pkg("apollo-torch"),)),
    (("lomo", "adalomo"), (_pkg("lomo-optim"),)),
    (("grokadamw",), (_pkg("grokadamw"),)),
    (("schedule_free_",), (_pkg("schedulefree"),)),
    (("adamw_torch_4bit", "adamw_torch_8bit"), (_pkg("torchao", minimum="0.4.0"),)),
    (("adamw_anyprecision",), (_pkg("torchdistx"),)),
    (("stable_adamw",), (_pkg("torch-optimi", "optimi"),)),
    (("adamw_apex_fused",), (_pkg("apex"),)),
)
FLASH_ATTN_2 = Package("flash-attn", "flash_attn", "2.3.3")
FA2_TRANSFORMERS = Package("transformers", "transformers", broken=FA2_BROKEN_TRANSFORMERS, fix=FA2_TRANSFORMERS_FIX)


def package_needs(config: Mapping[str, Any], zero: ZeroSettings) -> list[Need]:
    """Every package `config` needs at run time, with the key that asks for it."""
    needs = [Need(key, f"{key}: true", "LLaMA-Factory checks it before training", package)
             for key, package in LF_FLAG_PACKAGES.items() if config.get(key) is True]
    if isinstance(config.get("mixture_of_depths"), str):
        needs.append(Need("mixture_of_depths", f"mixture_of_depths: {config['mixture_of_depths']}",
                          "LLaMA-Factory checks it before training", MIXTURE_OF_DEPTHS))
    needs += _report_to(config) + _optimizer(config) + _quantization(config, zero) + _attention(config)
    return [need for need in needs if need.package is not None]


def _report_to(config: Mapping[str, Any]) -> list[Need]:
    targets = split_arg(config.get("report_to")) if isinstance(config.get("report_to"), (str, list)) else []
    return [Need("report_to", f"report_to: {target}", "transformers' logging callback imports it", package)
            for target in targets for package in REPORT_TO_PACKAGES.get(target, ())]


def _optimizer(config: Mapping[str, Any]) -> list[Need]:
    optim = config.get("optim")
    if not isinstance(optim, str):
        return []
    return [Need("optim", f"optim: {optim}", "transformers builds the optimizer from it", package)
            for prefixes, packages in _OPTIM_PACKAGES if optim.startswith(prefixes) for package in packages]


def _quantization(config: Mapping[str, Any], zero: ZeroSettings) -> list[Need]:
    """bitsandbytes versions per bit width (quantization.py); hqq and eetq by quantization_method."""
    method = config.get("quantization_method") or "bnb"
    if method not in ("bnb", "hqq", "eetq"):
        return []
    needs = []
    for key in ("quantization_bit", "ref_model_quantization_bit"):
        bits = config.get(key)
        if not isinstance(bits, int) or isinstance(bits, bool):
            continue
        why = f"LLaMA-Factory quantizes the {'reference ' if key.startswith('ref') else ''}model on load"
        if method != "bnb":
            needs.append(Need(key, f"{key}: {bits}", why, _pkg(str(method))))
            continue
        minimum = "0.43.0" if bits == 4 and zero.stage == 3 else "0.39.0" if bits == 4 else "0.37.0"
        needs += [Need(key, f"{key}: {bits}", why, Package(BITSANDBYTES, BITSANDBYTES, minimum)),
                  Need(key, f"{key}: {bits}", "bitsandbytes quantizes on CUDA", cuda=True)]
    return needs


def _attention(config: Mapping[str, Any]) -> list[Need]:
    if setting(config, "flash_attn") != "fa2":
        return []
    why = "FlashAttention-2 runs on NVIDIA Ampere or newer"
    return [Need("flash_attn", "flash_attn: fa2", "without it LLaMA-Factory warns and silently uses the default "
                 "attention", FLASH_ATTN_2),
            Need("flash_attn", "flash_attn: fa2", "transformers 5.6.0 crashes on the first forward "
                 "(huggingface/transformers#45588)", FA2_TRANSFORMERS),
            Need("flash_attn", "flash_attn: fa2", why, cuda=True, compute_capability=AMPERE)]


# transformers' precision flags -> whether they need bfloat16 hardware.
# tf32 matmuls exist on Ampere or newer too (transformers: "--tf32 requires Ampere or a newer GPU arch").
PRECISION_FLAGS = {"bf16": True, "pure_bf16": True, "bf16_full_eval": True, "tf32": True, "fp16": False,
                   "fp16_full_eval": False}


def hardware_needs(config: Mapping[str, Any]) -> list[Need]:
    """CUDA GPUs (and compute capabilities) the config needs: precision flags, fa2, on-the-fly quantization."""
    needs = [Need(key, f"{key}: true", f"{'tf32' if key == 'tf32' else 'bfloat16'} runs natively on NVIDIA Ampere or "
                  "newer" if ampere else "fp16 mixed precision runs on CUDA", cuda=True,
                  compute_capability=AMPERE if ampere else None)
             for key, ampere in PRECISION_FLAGS.items() if config.get(key) is True]
    return needs + [need for need in _attention(config) + _quantization(config, ZeroSettings(None)) if need.cuda]


# DeepSpeed offloads the optimizer to DeepSpeedCPUAdam, a C++ op: prebuilt (DS_BUILD_CPU_ADAM=1 at install) or
# compiled on first use with ninja and a C++ compiler (deepspeed/ops/op_builder/builder.py `jit_load`).
CPU_ADAM_OP = "cpu_adam"


def needs_cpu_adam(zero: ZeroSettings) -> bool:
    return zero.stage is not None and zero.offload_optimizer
