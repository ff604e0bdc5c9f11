"""Batch and steps: world size, effective batch, and steps per epoch and in all when the data is local."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from launcher.lf.settings import setting, split_arg


@dataclass(frozen=True)
class BatchPlan:
    world_size: int
    per_device_batch: int
    gradient_accumulation_steps: int
    effective_batch: int
    sequences_per_forward: int  # DPO/KTO forward chosen and rejected (or KL) together: 2 x per-device batch
    train_examples: int | None = None
    eval_examples: int | None = None
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    epochs: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def resolve_batch(config: Mapping[str, Any], world_size: int,
                  dataset_sizes: Mapping[str, int | None] | None = None) -> BatchPlan:
    """World size, effective batch and, when every training dataset has a known size, steps per epoch and in all.

    `dataset_sizes` maps each name in `dataset` to its record count (None when not local)."""
    bs = int(setting(config, "per_device_train_batch_size"))
    accumulation = int(setting(config, "gradient_accumulation_steps"))
    base: dict[str, Any] = {"world_size": world_size, "per_device_batch": bs,
                            "gradient_accumulation_steps": accumulation,
                            "effective_batch": bs * accumulation * world_size, "sequences_per_forward": 2 * bs}
    max_steps = int(setting(config, "max_steps"))
    counts, why_unknown = training_examples(config, dataset_sizes or {})
    if counts is None:
        total = max_steps if max_steps > 0 else None
        return BatchPlan(**base, total_steps=total, notes=(why_unknown,))
    train, evaluation = counts
    per_epoch = steps_per_epoch(train, bs, accumulation, world_size, bool(setting(config, "dataloader_drop_last")))
    epochs = float(setting(config, "num_train_epochs"))
    total = max_steps if max_steps > 0 else math.ceil(epochs * per_epoch)
    if max_steps > 0:
        epochs = max_steps / per_epoch
    return BatchPlan(**base, train_examples=train, eval_examples=evaluation, steps_per_epoch=per_epoch,
                     total_steps=total, epochs=epochs)


def training_examples(config: Mapping[str, Any], sizes: Mapping[str, int | None]
                      ) -> tuple[tuple[int, int] | None, str]:
    """(train, eval-from-val_size) example counts as LLaMA-Factory derives them, or None and why not.

    Order as in data/loader.py: each dataset is truncated to max_samples, then concatenated, then val_size is
    split off with datasets' train_test_split (fraction: ceil(val_size x n) held out; integer > 1: that many)."""
    names = split_arg(config.get("dataset"))
    if setting(config, "streaming"):
        return None, "steps: unknown (streaming datasets have no length; max_steps sets the total)"
    if len(names) > 1 and setting(config, "mix_strategy") != "concat":
        return None, f"steps: unknown (mix_strategy {setting(config, 'mix_strategy')} resamples the datasets)"
    missing = [name for name in names if sizes.get(name) is None]
    if not names or missing:
        return None, f"steps: unknown (not a local dataset: {', '.join(missing) or 'none given'})"
    limit = setting(config, "max_samples")
    counts = [int(sizes[name] or 0) for name in names]  # every name has a size here (missing ones returned above)
    total = sum(min(count, int(limit)) if limit is not None else count for count in counts)
    val_size = float(setting(config, "val_size"))
    held_out = 0
    if val_size > 1e-6:
        held_out = int(val_size) if val_size > 1 else math.ceil(val_size * total)
    return (total - held_out, held_out), ""


def steps_per_epoch(examples: int, per_device_batch: int, accumulation: int, world_size: int,
                    drop_last: bool = False) -> int:
    """Optimizer steps per epoch, as transformers 5.6 counts them.

    accelerate shards the batch sampler over ranks (data_loader.py BatchSamplerShard.__len__, even_batches):
    len(dataloader) = ceil(ceil(n / bs) / world) = ceil(n / (bs x world)) (floor twice with drop_last); then
    Trainer.set_initial_training_values: max(len // accumulation + (len % accumulation > 0), 1), i.e. a last
    partial accumulation still counts as a step. Total = max_steps if > 0 else ceil(epochs x steps per epoch)."""
    if drop_last:
        batches = (examples // per_device_batch) // world_size
    else:
        batches = math.ceil(examples / (per_device_batch * world_size))
    return max(math.ceil(batches / accumulation), 1)
