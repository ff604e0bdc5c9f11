"""What `train` checks on the machine that runs the job, before it writes or starts anything.

`validate` can only note these (the config may run elsewhere); here they are enforced, without importing torch.
"""

from __future__ import annotations

import sys

from launcher.check.config import LoadedConfig
from launcher.check.diagnostics import ERROR, render_text
from launcher.plan.topology import TrainRefused

PRECISION_KEYS = ("bf16", "fp16", "pure_bf16")


def check_precision(loaded: LoadedConfig, gpus: int) -> None:
    """bf16/fp16 train only on CUDA here; say so up front instead of failing inside every rank."""
    if gpus:
        return
    wanted = [key for key in PRECISION_KEYS if loaded.values.get(key) is True]
    if not wanted:
        return
    diagnostics = [loaded.diagnostic(ERROR, "needs-gpu", f"{key}: true needs a CUDA GPU, but this machine has "
                                     "none visible (or torch is a CPU-only build)", key,
                                     hint=f"set {key}: false (CPU trains in fp32) or run on a GPU machine")
                   for key in wanted]
    render_text(diagnostics, sys.stdout)
    raise TrainRefused("mixed precision asked for on a machine without a usable GPU")
