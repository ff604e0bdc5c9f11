"""Workarounds for upstream bugs outside the loss (that one is launcher.worker.loss_patch), applied in the worker.

Resuming a multi-rank CPU run: transformers 5.6 `Trainer._load_optimizer_and_scheduler`
(transformers/trainer.py, line 3646: `map_location = self.args.device if self.args.world_size > 1 else "cpu"`)
loads `optimizer.pt` with `map_location=torch.device("cpu:0")` under gloo, and torch.load's CPU
deserializer accepts only the location "cpu": `RuntimeError: don't know how to restore data location of
torch.storage.UntypedStorage (tagged with cpu:0)`. While that method runs on a CPU device, a `cpu:N`
map_location is read as "cpu"; nothing else changes (CUDA devices, other loads, other methods).

Only the worker imports this module, inside a function (it imports torch and transformers).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

_PATCHED_FLAG = "_dpo_launch_cpu_map_location"


def install() -> None:
    """Wrap the Trainer's optimizer/scheduler load once per process (idempotent)."""
    from transformers import Trainer

    original = Trainer._load_optimizer_and_scheduler
    if getattr(original, _PATCHED_FLAG, False):
        return

    @functools.wraps(original)
    def load_optimizer_and_scheduler(self, checkpoint):
        if getattr(self.args.device, "type", None) != "cpu":
            return original(self, checkpoint)
        with cpu_map_location():
            return original(self, checkpoint)

    setattr(load_optimizer_and_scheduler, _PATCHED_FLAG, True)
    Trainer._load_optimizer_and_scheduler = load_optimizer_and_scheduler


def plain_cpu(map_location):
    """`cpu:N` (a string or a torch.device) -> "cpu"; any other map_location as it was."""
    import torch

    if isinstance(map_location, (str, torch.device)) and torch.device(map_location).type == "cpu":
        return "cpu"
    return map_location


@contextmanager
def cpu_map_location():
    """For the duration, torch.load maps every `cpu:N` location to "cpu" (restored afterwards, even on error)."""
    import torch

    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        if "map_location" in kwargs:
            kwargs["map_location"] = plain_cpu(kwargs["map_location"])
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
