"""Checks that depend on the machine that runs the job: notes in `validate`, never errors.

A config written for a GPU cluster must validate on a laptop or in CI; `dpo-launch train` enforces these on
the machine that runs it (launcher/run/preflight.py), from the same facts: launcher/lf/requirements.py says which
packages and GPUs each setting needs. LLaMA-Factory's parser, for one, rejects `bf16: true` on a CPU-only machine.
"""

from __future__ import annotations

from collections.abc import Iterator

from launcher.check.diagnostics import Diagnostic
from launcher.check.rules.context import RuleContext
from launcher.lf.deepspeed import zero_settings
from launcher.lf.requirements import Need, hardware_needs, needs_cpu_adam, package_needs

ENFORCED = "checked by `dpo-launch train` on the machine that runs the job, not by validate"
# LF/transformers' own refusal on a machine without the hardware (quoted so users recognise it), or advice.
_MORE = {
    "bf16": 'without one LLaMA-Factory stops with "Your setup doesn\'t support bf16/gpu. You need to assign use_cpu '
            'if you want to train the model on CPU."',
    "pure_bf16": 'without one LLaMA-Factory stops with "This device does not support `pure_bf16`."',
    "fp16": "fp16 can overflow into NaN rewards in DPO (LLaMA-Factory #2819), bf16 is safer",
    "flash_attn": "transformers 5.6.0 crashes on the first forward (huggingface/transformers#45588); 'auto' lets "
                  "transformers choose",
}
_CODES = {"bf16": "machine-precision", "pure_bf16": "machine-precision", "fp16": "machine-precision",
          "bf16_full_eval": "machine-precision", "fp16_full_eval": "machine-precision", "tf32": "machine-precision",
          "flash_attn": "machine-flash-attention", "quantization_bit": "machine-quantization",
          "ref_model_quantization_bit": "machine-quantization"}


def machine_needs(ctx: RuleContext) -> Iterator[Diagnostic]:
    """One note per setting: the packages (with versions) and the GPU it needs where the job runs."""
    needs = hardware_needs(ctx.values) + package_needs(ctx.values, zero_settings(ctx.values, ctx.cwd))
    by_setting: dict[tuple[str, str], list[Need]] = {}
    for need in needs:
        by_setting.setdefault((need.key, need.setting), []).append(need)
    for (key, setting), group in by_setting.items():
        more = f"; {_MORE[key]}" if key in _MORE else ""
        installs = sorted({need.package.install() for need in group if need.package})
        install = f"; install with `{'` and `'.join(installs)}`" if installs else ""
        yield ctx.note(_CODES.get(key, "machine-package"), f"{setting} needs {_needs_text(group)}", key,
                       ENFORCED + more + install)


def _needs_text(group: list[Need]) -> str:
    parts = [need.package.wanted for need in group if need.package]
    gpu = [need for need in group if need.cuda]
    if gpu:
        wanted = max((need.compute_capability for need in gpu if need.compute_capability), default=None)
        capability = f" with compute capability {wanted[0]}.{wanted[1]} or higher (NVIDIA Ampere or newer)" \
            if wanted else ""
        parts.append(f"a CUDA GPU{capability}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def cpu_adam_for_offload(ctx: RuleContext) -> Iterator[Diagnostic]:
    if needs_cpu_adam(zero_settings(ctx.values, ctx.cwd)):
        yield ctx.note("machine-package", "deepspeed offloads the optimizer to CPU: DeepSpeed's CPU Adam op must be "
                       "prebuilt or compiled at the first step (ninja and a C++ compiler, and nvcc on GPUs)",
                       "deepspeed", ENFORCED)


def deepspeed_needs_distributed_launch(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.is_set("deepspeed"):
        yield ctx.note(
            "deepspeed-launch", "deepspeed needs a distributed launch: `dpo-launch train` starts torchrun itself; "
            "plain `llamafactory-cli train` needs FORCE_TORCHRUN=1 on a single-GPU machine", "deepspeed",
            'without it LLaMA-Factory stops with "Please use `FORCE_TORCHRUN=1` to launch DeepSpeed training."')


RULES = (machine_needs, cpu_adam_for_offload, deepspeed_needs_distributed_launch)
