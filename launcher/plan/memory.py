"""A per-GPU memory estimate for a DPO/KTO run: each term with its formula, in GiB. An estimate, not a measurement.

Byte counts per parameter follow the ZeRO paper (Rajbhandari et al. 2020) and what LLaMA-Factory 0.9.5 does:
weights load in half precision wherever the device supports it (extras/misc.py infer_optim_dtype); trainable
parameters are upcast to fp32 unless pure_bf16 or ZeRO-3 (model/adapter.py:313-325); trl puts a reference
under ZeRO 0/1/2 on stage 0, a full replica per GPU, and shards it under ZeRO-3 (trl models/utils.py
prepare_deepspeed). The activation term is rough; the fp32 full-vocabulary logits dominate at long cutoff_len
(docs/upstream-notes.md#reference-model). Not counted: the CUDA context, allocator fragmentation, ZeRO-3 prefetch
buffers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from launcher.lf.deepspeed import ZeroSettings, zero_settings
from launcher.lf.losses import precomputable_reference
from launcher.lf.resolve import (
    ADAPTER_DISABLED,
    EXPLICIT,
    FROZEN_COPY,
    NONE,
    ReferenceResolution,
)
from launcher.lf.settings import setting, split_arg
from launcher.plan.model_size import ModelShape, ModelSize, model_size

GIB = 1024 ** 3


@dataclass(frozen=True)
class MemoryTerm:
    name: str
    gib: float | None
    formula: str


@dataclass(frozen=True)
class MemoryEstimate:
    terms: tuple[MemoryTerm, ...]
    total_gib: float | None
    zero: str
    parameters: int | None
    trainable_parameters: int | None
    model_source: str
    notes: tuple[str, ...] = ()
    by_zero_stage: tuple[tuple[str, float | None], ...] = ()
    # The total with `train --precompute-ref` (no reference model, no reference forward); None when there is no
    # reference to precompute.
    precomputed_ref_gib: float | None = None


# What `plan` compares side by side: ZeRO 0/1/2/3 with and without offload.
ZERO_CHOICES = (ZeroSettings(None), ZeroSettings(0), ZeroSettings(1), ZeroSettings(2), ZeroSettings(2, True),
                ZeroSettings(3), ZeroSettings(3, True, True))


def estimate_memory(config: Mapping[str, Any], reference: ReferenceResolution, world_size: int, cwd: Path,
                    zero: ZeroSettings | None = None) -> MemoryEstimate:
    """Estimate per-GPU memory for `config` with the configured ZeRO settings, plus the total for each choice."""
    zero = zero_settings(config, cwd) if zero is None else zero
    policy = model_size(config.get("model_name_or_path"), cwd)
    ref_size = policy
    if reference.kind == EXPLICIT:
        ref_size = model_size(reference.source, cwd)
    estimate = _estimate(config, policy, reference, ref_size, world_size, zero)
    totals = tuple((choice.label, _estimate(config, policy, reference, ref_size, world_size, choice).total_gib)
                   for choice in ZERO_CHOICES)
    precomputed = None
    if precomputable_reference(config) and reference.kind in (EXPLICIT, FROZEN_COPY, ADAPTER_DISABLED):
        cached = replace(reference, kind=NONE)  # cached log-probs: no reference weights, no reference forward
        precomputed = _estimate(config, policy, cached, ref_size, world_size, zero).total_gib
    return replace(estimate, by_zero_stage=totals, precomputed_ref_gib=precomputed)


def _estimate(config: Mapping[str, Any], policy: ModelSize, reference: ReferenceResolution, ref_size: ModelSize,
              world: int, zero: ZeroSettings) -> MemoryEstimate:
    notes: list[str] = []
    trainable = trainable_parameters(config, policy, notes)
    terms = [*_model_state_terms(config, policy, trainable, world, zero),
             _reference_term(config, reference, ref_size if ref_size.parameters else policy, world, zero, notes),
             *_activation_terms(config, policy.shape, reference)]
    known = [term.gib for term in terms if term.gib is not None]
    total = sum(known) if len(known) == len(terms) else None
    return MemoryEstimate(tuple(terms), total, zero.label, policy.parameters, trainable, policy.source, tuple(notes))


def trainable_parameters(config: Mapping[str, Any], size: ModelSize, notes: list[str]) -> int | None:
    """Trainable parameters: all (full), the last/first N layers (freeze) or the LoRA matrices (lora)."""
    method, shape = setting(config, "finetuning_type"), size.shape
    if method == "full":
        return size.parameters
    if shape is None:
        notes.append(f"{method} trainable parameters unknown without the model's config.json")
        return None
    if method == "freeze":
        return abs(int(config.get("freeze_trainable_layers") or 2)) * shape.layer_parameters()
    if method == "oft":
        notes.append("OFT's trainable parameters are not estimated (small next to the base model)")
        return 0
    return lora_parameters(config, shape, notes)


def lora_parameters(config: Mapping[str, Any], shape: ModelShape, notes: list[str]) -> int:
    """rank x (in + out) for each targeted linear layer of each block; `all` = every linear layer but lm_head
    (model/model_utils/misc.py find_all_linear_modules)."""
    rank, modules = int(config.get("lora_rank") or 8), shape.linear_modules()
    targets = split_arg(config.get("lora_target") or "all")
    if targets == ["all"]:
        targets = list(modules)
    unknown = [name for name in targets if name not in modules]
    if unknown:
        notes.append(f"lora_target {', '.join(unknown)}: not a Llama-style linear layer, not counted")
    return shape.num_hidden_layers * sum(rank * sum(modules[name]) for name in targets if name in modules)


def _model_state_terms(config: Mapping[str, Any], size: ModelSize, trainable: int | None, world: int,
                       zero: ZeroSettings) -> list[MemoryTerm]:
    """Policy weights, gradients and optimizer states, sharded as the ZeRO stage says."""
    total, method = size.parameters, setting(config, "finetuning_type")
    if total is None or trainable is None:
        names = ("policy weights", "gradients", "optimizer states")
        return [MemoryTerm(name, None, "unknown model size") for name in names]
    frozen = total - trainable if method in ("full", "freeze") else total
    weight_bytes, grad_bytes, optim_bytes, how = _trainable_bytes(config, zero)
    shard = {k: world if zero.stage is not None and zero.stage >= k else 1 for k in (1, 2, 3)}
    frozen_gib, frozen_formula = _frozen_weights(config, size, frozen)
    weights_on_gpu = 0.0 if zero.offload_param else (frozen_gib + trainable * weight_bytes / GIB) / shard[3]
    optimizer_on_gpu = 0.0 if zero.offload_optimizer else trainable * optim_bytes / GIB / shard[1]
    per_gpu = f" / {world} GPUs" if world > 1 else ""
    weights_formula = f"{_count(trainable)} trainable × {weight_bytes} B"
    if frozen:
        weights_formula = f"{frozen_formula} + {weights_formula}"
    if shard[3] > 1:
        weights_formula = f"({weights_formula}){per_gpu}"
    return [
        MemoryTerm("policy weights", weights_on_gpu, "offloaded to CPU" if zero.offload_param else weights_formula),
        MemoryTerm("gradients", trainable * grad_bytes / GIB / shard[2],
                   f"{_count(trainable)} × {grad_bytes} B{per_gpu if shard[2] > 1 else ''}"),
        MemoryTerm("optimizer states", optimizer_on_gpu,
                   "offloaded to CPU" if zero.offload_optimizer else
                   f"{_count(trainable)} × {optim_bytes} B ({how}){per_gpu if shard[1] > 1 else ''}"),
    ]


def _trainable_bytes(config: Mapping[str, Any], zero: ZeroSettings) -> tuple[int, int, int, str]:
    """(weight, gradient, optimizer) bytes per trainable parameter and what the optimizer bytes hold."""
    half = bool(config.get("bf16") or config.get("fp16") or config.get("pure_bf16"))
    eight_bit = "8bit" in str(config.get("optim") or "")
    if zero.stage is not None and half:  # DeepSpeed mixed precision: half weights/grads, fp32 master + Adam
        return 2, 2, 12, "fp32 master copy + Adam m, v"
    weight = 2 if config.get("pure_bf16") else 4  # LF upcasts trainable params to fp32 otherwise
    if eight_bit:
        return weight, weight, 2, "8-bit Adam m, v"
    return weight, weight, 2 * weight, "Adam m, v"


def _frozen_weights(config: Mapping[str, Any], size: ModelSize, frozen: int) -> tuple[float, str]:
    """Frozen weights in half precision, or bitsandbytes 4/8-bit for the decoder's linear layers (QLoRA)."""
    load = _load_bytes(config)
    bits = config.get("quantization_bit") if setting(config, "finetuning_type") in ("lora", "oft") else None
    return _weights(size, frozen, load, bits)


def _weights(size: ModelSize, parameters: int, load_bytes: int, bits: Any) -> tuple[float, str]:
    if not bits or size.shape is None:
        return parameters * load_bytes / GIB, f"{_count(parameters)} × {load_bytes} B"
    linear = size.shape.num_hidden_layers * size.shape.linear_parameters_per_layer()
    rest = max(parameters - linear, 0)
    gib = (linear * int(bits) / 8 + rest * load_bytes) / GIB
    return gib, f"{_count(linear)} linear × {int(bits)}/8 B + {_count(rest)} × {load_bytes} B"


def _load_bytes(config: Mapping[str, Any]) -> int:
    return 4 if str(config.get("infer_dtype")) == "float32" else 2


def _reference_term(config: Mapping[str, Any], reference: ReferenceResolution, size: ModelSize, world: int,
                    zero: ZeroSettings, notes: list[str]) -> MemoryTerm:
    if reference.kind not in (EXPLICIT, FROZEN_COPY):
        what = "none: the policy with adapters disabled" if reference.kind == ADAPTER_DISABLED else "none"
        return MemoryTerm("reference model", 0.0, what)
    if size.parameters is None:
        return MemoryTerm("reference model", None, "unknown model size")
    if reference.kind == EXPLICIT and size.shape is None and reference.source != config.get("model_name_or_path"):
        notes.append("reference size unknown: assumed equal to the policy's")
    gib, formula = _weights(size, size.parameters, _load_bytes(config), reference.quantization_bit)
    if reference.quantization_bit:  # trl does not wrap 4/8-bit references in DeepSpeed: a replica per GPU
        return MemoryTerm("reference model", gib, f"{formula}, quantized, a replica per GPU")
    if zero.stage == 3:
        if zero.offload_param:
            return MemoryTerm("reference model", 0.0, "ZeRO-3 offloads it to CPU")
        return MemoryTerm("reference model", gib / world, f"{formula} / {world} GPUs (ZeRO-3 shards it)")
    where = "trl runs it on ZeRO stage 0: " if zero.stage is not None else ""
    return MemoryTerm("reference model", gib, f"{formula}, {where}a full replica per GPU")


def _activation_terms(config: Mapping[str, Any], shape: ModelShape | None,
                      reference: ReferenceResolution) -> list[MemoryTerm]:
    """Hidden states saved for backward and the full-vocabulary logits for 2 × batch × cutoff_len tokens."""
    if shape is None:
        return [MemoryTerm(name, None, "unknown without the model's config.json") for name in ("activations", "logits")]
    batch, cutoff = int(setting(config, "per_device_train_batch_size")), int(setting(config, "cutoff_len"))
    tokens, act = 2 * batch * cutoff, _load_bytes(config)
    h, layers = shape.hidden_size, shape.num_hidden_layers
    # Per token and block: norms, q/k/v, attention out, MLP gate/up/act/product (rough, flash/sdpa attention).
    block = 7 * h + 2 * shape.kv_dim + 4 * shape.intermediate_size
    t = f"T = 2 × {batch} × {cutoff} = {tokens} tokens"
    if config.get("disable_gradient_checkpointing"):
        activations = MemoryTerm("activations", layers * tokens * block * act / GIB,
                                 f"{t}; T × {layers} layers × {block} × {act} B")
    else:  # LLaMA-Factory turns gradient checkpointing on by default
        activations = MemoryTerm("activations", tokens * (layers * h + block) * act / GIB,
                                 f"{t}; checkpointed: T × ({layers} layers × {h} + {block}) × {act} B")
    # Policy: fp32 logits (kept for the logits/* metrics) + fp32 log-softmax (kept for backward); the
    # reference's no-grad forward then peaks at another half + 2 fp32 copies (train/dpo/trainer.py:230-312).
    per_token = 8 + (act + 8 if reference.kind != "none" else act)
    logits = MemoryTerm("logits", tokens * shape.vocab_size * per_token / GIB,
                        f"T × vocab {shape.vocab_size} × {per_token} B (fp32 logits and log-softmax"
                        + (", plus the reference forward)" if reference.kind != "none" else ")"))
    return [activations, logits]


def _count(n: int) -> str:
    """1234567 -> '1.23M' for formulas."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)
