"""What a config will train, resolved without importing torch: the reference model and the loss.

Pure functions over the flat config dict (as LLaMA-Factory 0.9.5 sees it). `validate` warns with their
findings, `plan` prints them; the worker reports what it actually built in runtime.json, and a test compares
the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from launcher.lf.losses import Loss, first_step_check, resolve_loss
from launcher.lf.settings import setting, split_arg

EXPLICIT, ADAPTER_DISABLED, FROZEN_COPY, NONE, POLICY = "explicit", "adapter-disabled", "frozen-copy", "none", "policy"

# --- reference model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A warning or note about the resolved plan, located at a config key when one is to blame."""

    severity: str  # "warning" | "note"
    code: str
    message: str
    key: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class ReferenceResolution:
    kind: str  # explicit | adapter-disabled | frozen-copy | none | policy
    description: str
    source: str | None = None  # the checkpoint the reference weights load from
    adapters: tuple[str, ...] = ()  # adapters merged into the reference
    quantization_bit: int | None = None
    warnings: tuple[Finding, ...] = ()


def resolve_reference(config: Mapping[str, Any], zero_stage: int | None = None) -> ReferenceResolution:
    """Which reference model LLaMA-Factory 0.9.5 builds (train/dpo/workflow.py:56-63, kto/workflow.py:56-60,
    train/trainer_utils.py create_ref_model). `zero_stage` is the DeepSpeed stage read from the config's
    deepspeed JSON (None: guessed from an inline dict or the file name)."""
    stage, loss = setting(config, "stage"), resolve_loss(config)
    if stage == "dpo" and not loss.uses_reference:
        return ReferenceResolution(NONE, f"none: {loss.name} is reference-free; rewards are β × the policy's "
                                         "average log-probs")
    if config.get("ref_model"):
        return _explicit_reference(config)
    if not setting(config, "do_train"):
        return ReferenceResolution(POLICY, "the policy itself (do_train is false and no ref_model is set); "
                                           "rewards are dropped from evaluation", config.get("model_name_or_path"))
    if setting(config, "finetuning_type") == "lora":
        return _adapter_disabled_reference(config, _zero3(config, zero_stage))
    return ReferenceResolution(
        FROZEN_COPY,
        f"a frozen copy of the base checkpoint ({setting(config, 'finetuning_type')} fine-tuning): a second full "
        "model in memory",
        config.get("model_name_or_path"), tuple(split_arg(config.get("adapter_name_or_path"))),
        config.get("quantization_bit"))


def _explicit_reference(config: Mapping[str, Any]) -> ReferenceResolution:
    adapters = tuple(split_arg(config.get("ref_model_adapters")))
    bits = config.get("ref_model_quantization_bit")
    parts = [f"the explicit ref_model {config['ref_model']}"]
    if adapters:
        parts.append(f"with adapter(s) {', '.join(adapters)}")
    parts.append(f"quantized to {bits} bits" if bits else "unquantized")
    warnings: tuple[Finding, ...] = ()
    if bits is None and config.get("quantization_bit"):
        # create_ref_model copies ModelArguments but overrides quantization_bit with ref_model_quantization_bit.
        warnings = (Finding("note", "reference-unquantized",
                            f"the reference loads unquantized although the policy uses quantization_bit "
                            f"{config['quantization_bit']}: ref_model_quantization_bit is unset",
                            "ref_model", "set ref_model_quantization_bit: 4 to quantize the reference too"),)
    return ReferenceResolution(EXPLICIT, ", ".join(parts), str(config["ref_model"]), adapters, bits, warnings)


def _adapter_disabled_reference(config: Mapping[str, Any], zero3: bool) -> ReferenceResolution:
    adapters = split_arg(config.get("adapter_name_or_path"))
    all_merged = _adapters_merged(config, zero3)
    merged = adapters if all_merged else adapters[:-1]
    base = str(config.get("model_name_or_path"))
    what = f"{base} with {', '.join(merged)} merged" if merged else f"the base model {base}"
    description = f"the LoRA policy with its adapters disabled, i.e. {what}"
    warnings = (_sft_adapter_trap(config, adapters[-1]),) if adapters and not all_merged else ()
    return ReferenceResolution(ADAPTER_DISABLED, description, config.get("model_name_or_path"), tuple(merged),
                               config.get("quantization_bit"), warnings)


def _adapters_merged(config: Mapping[str, Any], zero3: bool) -> bool:
    """All adapters are merged into the base (so the reference includes them) only with create_new_adapter,
    and never under ZeRO-3, quantization, Unsloth or KTransformers (model/adapter.py:157-176)."""
    mergeable = not (config.get("quantization_bit") or config.get("use_unsloth") or config.get("use_kt") or zero3)
    return bool(config.get("create_new_adapter")) and mergeable


def _zero3(config: Mapping[str, Any], zero_stage: int | None) -> bool:
    """ZeRO-3 as read from the DeepSpeed JSON, else guessed from an inline dict or the preset's file name."""
    if zero_stage is not None:
        return zero_stage == 3
    deepspeed = config.get("deepspeed")
    if isinstance(deepspeed, Mapping):
        return (deepspeed.get("zero_optimization") or {}).get("stage") == 3
    return bool(deepspeed) and "z3" in str(deepspeed).lower().replace("zero3", "z3").replace("zero_3", "z3")


def _sft_adapter_trap(config: Mapping[str, Any], adapter: str) -> Finding:
    # https://github.com/hiyouga/LlamaFactory/issues/8459, https://github.com/hiyouga/LlamaFactory/issues/8974
    blocked = ""
    if config.get("create_new_adapter"):
        blocked = " (create_new_adapter is ignored under ZeRO-3 and quantization)"
    return Finding(
        "warning", "sft-adapter-reference",
        f"LoRA DPO continues the adapter {adapter} without ref_model, so the reference is the BASE model, not "
        f"your SFT model{blocked}: rewards start skewed and the loss can collapse to 0 (LLaMA-Factory #8459, #8974)",
        "adapter_name_or_path",
        "fix: set create_new_adapter: true, which works except under ZeRO-3 or quantization; or train from a "
        "merged SFT checkpoint; or set ref_model: <base> with ref_model_adapters: <sft adapter>")


# --- loss --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LossPlan:
    name: str
    stage: str
    formula: str
    parameters: dict[str, Any]
    uses_reference: bool
    averaged_logps: bool
    silently_sigmoid_under_llamafactory_cli: bool
    first_step_loss: float | None  # the closed form, where the loss has one
    first_step_checked: bool  # whether the worker checks it (launcher.lf.losses.first_step_check)
    first_step_skipped_because: str  # why it does not ("" when it does)
    findings: tuple[Finding, ...] = ()


def resolve_loss_plan(config: Mapping[str, Any]) -> LossPlan:
    """The loss that runs, its formula and the resolved value of each parameter it reads."""
    loss = resolve_loss(config)
    parameters = {name: setting(config, name) for name in loss.parameters}
    check = first_step_check(config)
    return LossPlan(loss.name, loss.stage, loss.formula, parameters, loss.uses_reference, loss.averaged_logps,
                    loss.silently_sigmoid_under_llamafactory_cli, loss.first_step_loss(config),
                    check.expected is not None, check.skipped_because, _loss_findings(config, loss))


def _loss_findings(config: Mapping[str, Any], loss: Loss) -> tuple[Finding, ...]:
    findings = []
    if loss.silently_sigmoid_under_llamafactory_cli:
        findings.append(Finding(
            "note", "loss-silently-sigmoid",
            f"`llamafactory-cli train` would silently run the sigmoid loss for pref_loss: {loss.name} (trl >= 0.20 "
            "ignores LLaMA-Factory's loss_type); `dpo-launch train` runs it as itself", "pref_loss"))
    beta = float(setting(config, "pref_beta"))
    if loss.name == "simpo" and beta < 1.0:
        # https://github.com/hiyouga/LlamaFactory/issues/4414: SimPO's β is pref_beta, its margin is γ/β.
        findings.append(Finding(
            "warning", "simpo-beta-small",
            f"SimPO uses pref_beta {beta:g} as β, so the margin γ/β is "
            f"{float(setting(config, 'simpo_gamma')) / beta:g}",
            "pref_beta", "the SimPO paper uses β 2-10 with γ/β 0.3-0.6, e.g. pref_beta: 2.5, simpo_gamma: 1.375"))
    return tuple(findings)


def as_dict(value: Any) -> Any:
    """A resolution as plain JSON data (dataclasses, tuples -> dicts, lists)."""
    if is_dataclass(value) and not isinstance(value, type):
        return as_dict(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): as_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_dict(v) for v in value]
    return value

