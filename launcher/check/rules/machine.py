"""Checks that depend on the machine that runs the job: notes in `validate`, never errors.

A config written for a GPU cluster must validate on a laptop or in CI; `dpo-launch train` enforces these on
the machine that runs it (LLaMA-Factory's parser, for one, rejects `bf16: true` on a CPU-only machine).
"""

from __future__ import annotations

from collections.abc import Iterator

from launcher.check.diagnostics import Diagnostic
from launcher.check.rules.context import RuleContext
from launcher.check.schema_words import shown

ENFORCED = "checked by `dpo-launch train` on the machine that runs the job, not by validate"
_PRECISION = {
    "bf16": ("a GPU with bfloat16 (NVIDIA Ampere or newer)",
             "Your setup doesn't support bf16/gpu. You need to assign use_cpu if you want to train the model on CPU."),
    "pure_bf16": ("a GPU with bfloat16 (NVIDIA Ampere or newer)", "This device does not support `pure_bf16`."),
    "fp16": ("a CUDA GPU; fp16 can overflow into NaN rewards in DPO (LLaMA-Factory #2819), bf16 is safer", None),
}


def precision_needs_gpu(ctx: RuleContext) -> Iterator[Diagnostic]:
    for key, (needs, lf_message) in _PRECISION.items():
        if ctx.flag(key):
            refusal = f'; on other machines LLaMA-Factory stops with "{lf_message}"' if lf_message else ""
            yield ctx.note("machine-precision", f"{key}: true needs {needs}", key, ENFORCED + refusal)


def flash_attention_needs_gpu(ctx: RuleContext) -> Iterator[Diagnostic]:
    kind = ctx.text("flash_attn")
    if kind in ("fa2", "fa3"):
        package = "flash-attn" if kind == "fa2" else "flash-attn 3 (hopper build)"
        yield ctx.note("machine-flash-attention", f"flash_attn: {shown(kind)} needs the {package} package and a "
                       "supported NVIDIA GPU", "flash_attn", ENFORCED + "; use 'auto' to let transformers choose")


def quantization_needs_gpu(ctx: RuleContext) -> Iterator[Diagnostic]:
    for key in ("quantization_bit", "ref_model_quantization_bit"):
        if ctx.is_set(key):
            yield ctx.note("machine-quantization", f"{key}: {shown(ctx.raw(key))} quantizes on the fly with "
                           "bitsandbytes (by default), which needs the bitsandbytes package and a CUDA GPU", key,
                           ENFORCED)


def deepspeed_needs_distributed_launch(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.is_set("deepspeed"):
        yield ctx.note(
            "deepspeed-launch", "deepspeed needs a distributed launch: `dpo-launch train` starts torchrun itself; "
            "plain `llamafactory-cli train` needs FORCE_TORCHRUN=1 on a single-GPU machine", "deepspeed",
            'without it LLaMA-Factory stops with "Please use `FORCE_TORCHRUN=1` to launch DeepSpeed training."')


RULES = (precision_needs_gpu, flash_attention_needs_gpu, quantization_needs_gpu, deepspeed_needs_distributed_launch)
