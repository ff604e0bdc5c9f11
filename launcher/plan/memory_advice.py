"""Ways out of an out-of-memory plan: each change the TRL and LLaMA-Factory guides suggest, with this config's
estimate after it (launcher.plan.memory, the same estimate `plan` prints), so the choice is made with numbers.

Each way is one change on its own: LoRA, QLoRA (LoRA on a 4-bit base), ZeRO-3 across the GPUs, ZeRO-3 with CPU
offload, gradient checkpointing back on, half the cutoff_len, batch 1 with more accumulation (the same effective
batch), and a loss without a reference model (ORPO/SimPO). Changes that do not apply to the config are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.lf.deepspeed import ZeroSettings
from launcher.lf.resolve import resolve_reference
from launcher.lf.settings import setting
from launcher.plan.memory import MemoryEstimate, estimate_memory

ZERO3_PRESET = "config/deepspeed/ds_z3_config.json"
ZERO3_OFFLOAD_PRESET = "config/deepspeed/ds_z3_offload_config.json"


@dataclass(frozen=True)
class WayOut:
    change: str  # what to write, as config text or a launch change
    why: str
    total_gib: float | None


@dataclass(frozen=True)
class _Option:
    change: str
    why: str
    settings: Mapping[str, Any]
    zero: ZeroSettings | None = None  # None: the config's own


def ways_out(config: Mapping[str, Any], world: int, cwd: Path, zero: ZeroSettings) -> list[WayOut]:
    """Each applicable change with the per-GPU total it gives for `config` on `world` GPUs."""
    return [WayOut(option.change, option.why, _total(config, option, world, cwd, zero))
            for option in _options(config, world, zero)]


def _total(config: Mapping[str, Any], option: _Option, world: int, cwd: Path, zero: ZeroSettings) -> float | None:
    changed = {**config, **option.settings}
    chosen = option.zero or zero
    estimate: MemoryEstimate = estimate_memory(changed, resolve_reference(changed, chosen.stage), world, cwd, chosen)
    return estimate.total_gib


def _options(config: Mapping[str, Any], world: int, zero: ZeroSettings) -> list[_Option]:
    return [*_method_options(config), *_deepspeed_options(world, zero), *_activation_options(config),
            *_loss_options(config)]


def _method_options(config: Mapping[str, Any]) -> list[_Option]:
    method, bits = setting(config, "finetuning_type"), config.get("quantization_bit")
    found = []
    if method in ("full", "freeze"):
        found.append(_Option("finetuning_type: lora", "trains small adapters; the reference is the same model with "
                             "them disabled, so no second copy", {"finetuning_type": "lora"}))
    if bits is None and method in ("full", "freeze", "lora"):
        found.append(_Option("finetuning_type: lora + quantization_bit: 4", "QLoRA: the frozen base in 4 bits "
                             "(bitsandbytes, CUDA)", {"finetuning_type": "lora", "quantization_bit": 4}))
    return found


def _deepspeed_options(world: int, zero: ZeroSettings) -> list[_Option]:
    found = []
    if world > 1 and zero.stage != 3:
        found.append(_Option(f"deepspeed: {ZERO3_PRESET}", f"ZeRO-3 shards weights, gradients, optimizer states "
                             f"and the reference across the {world} GPUs", {}, ZeroSettings(3)))
    if not (zero.offload_optimizer and zero.offload_param):
        found.append(_Option(f"deepspeed: {ZERO3_OFFLOAD_PRESET}", "ZeRO-3 with the optimizer states and weights "
                             "offloaded to CPU memory (slower steps)", {}, ZeroSettings(3, True, True)))
    return found


def _activation_options(config: Mapping[str, Any]) -> list[_Option]:
    found = []
    if config.get("disable_gradient_checkpointing") is True:
        found.append(_Option("disable_gradient_checkpointing: false", "recomputes activations in the backward pass "
                             "instead of keeping every layer's", {"disable_gradient_checkpointing": False}))
    cutoff = setting(config, "cutoff_len")
    if isinstance(cutoff, int) and cutoff >= 2:
        found.append(_Option(f"cutoff_len: {cutoff // 2}", "halves activations and the full-vocabulary logits; "
                             "longer pairs are truncated (`validate --stats` counts them)",
                             {"cutoff_len": cutoff // 2}))
    batch, accumulation = setting(config, "per_device_train_batch_size"), setting(config, "gradient_accumulation_steps")
    if isinstance(batch, int) and isinstance(accumulation, int) and batch > 1:
        found.append(_Option(f"per_device_train_batch_size: 1, gradient_accumulation_steps: {batch * accumulation}",
                             "the same effective batch, one pair per forward",
                             {"per_device_train_batch_size": 1, "gradient_accumulation_steps": batch * accumulation}))
    return found


def _loss_options(config: Mapping[str, Any]) -> list[_Option]:
    if setting(config, "stage") != "dpo" or setting(config, "pref_loss") in ("orpo", "simpo"):
        return []
    return [_Option("pref_loss: orpo (or simpo)", "no reference model: no second copy and no reference forward",
                    {"pref_loss": "orpo"})]
