"""The GPUs of this machine as the NVIDIA driver reports them (name, compute capability, memory), without torch.

`nvidia_smi_output` is the one place that asks the driver (`nvidia-smi --query-gpu=... --format=csv`); everything
else parses or compares its text, so tests fake exactly what nvidia-smi prints. `--gpu-memory 80GiB` plans for
another machine's GPUs instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from launcher.errors import UsageError

QUERY = ("--query-gpu=index,uuid,name,compute_cap,memory.total", "--format=csv,noheader,nounits")
_UNITS = {"": 1.0, "g": 1.0, "gib": 1.0, "gb": 1e9 / 2 ** 30, "m": 1 / 1024, "mib": 1 / 1024, "mb": 1e6 / 2 ** 30,
          "t": 1024.0, "tib": 1024.0, "tb": 1e12 / 2 ** 30}


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    compute_capability: tuple[int, int] | None  # None: the driver did not say
    memory_gib: float | None


@dataclass(frozen=True)
class GpuMemory:
    """The memory one GPU has to hold the run, and where that number comes from."""

    gib: float
    source: str


def nvidia_smi_output() -> str | None:
    """What `nvidia-smi --query-gpu=...` prints, or None where it is missing or fails (an old driver that does not
    know compute_cap fails too)."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        result = subprocess.run([executable, *QUERY], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def parse_gpus(text: str) -> list[Gpu]:
    """nvidia-smi's CSV lines (index, uuid, name, compute_cap, memory.total in MiB) as Gpu records."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 5 or not fields[0].isdigit():
            continue
        index, uuid, name, capability, memory = fields
        gpus.append(Gpu(int(index), uuid, name, _capability(capability), _mib_to_gib(memory)))
    return gpus


def _capability(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def _mib_to_gib(text: str) -> float | None:
    try:
        return float(text) / 1024
    except ValueError:
        return None


def visible(gpus: Sequence[Gpu], env: Mapping[str, str]) -> list[Gpu]:
    """The GPUs CUDA_VISIBLE_DEVICES leaves this process (by index or UUID prefix; unset: all). CUDA stops at the
    first entry it cannot match, and so does this."""
    selection = env.get("CUDA_VISIBLE_DEVICES")
    if selection is None:
        return list(gpus)
    chosen: list[Gpu] = []
    for entry in (item.strip() for item in selection.split(",")):
        match = next((gpu for gpu in gpus if entry == str(gpu.index) or (entry.startswith("GPU-") and
                                                                          gpu.uuid.startswith(entry))), None)
        if match is None or match in chosen:
            break
        chosen.append(match)
    return chosen


def detect_gpus(env: Mapping[str, str]) -> list[Gpu] | None:
    """This process's GPUs with their details, or None when the driver cannot be asked."""
    output = nvidia_smi_output()
    return None if output is None else visible(parse_gpus(output), env)


def parse_memory_size(text: str) -> float:
    """'80GiB', '80GB', '81920MiB' or '80' (GiB) -> GiB. UsageError for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match[2].lower() if match else None
    if match is None or unit not in _UNITS or float(match[1]) <= 0:
        raise UsageError(f"--gpu-memory: expected a size such as 80GiB, 24GB or 81920MiB but got {text!r}")
    return float(match[1]) * _UNITS[unit]


def gpu_memory(flag: str | None, gpus: Sequence[Gpu] | None) -> GpuMemory | None:
    """The memory to plan against: `--gpu-memory` when given, else the smallest detected GPU's, else None."""
    if flag is not None:
        return GpuMemory(parse_memory_size(flag), f"--gpu-memory {flag}")
    known = [gpu for gpu in gpus or () if gpu.memory_gib]
    if not known:
        return None
    smallest = min(known, key=lambda gpu: gpu.memory_gib or 0.0)
    return GpuMemory(smallest.memory_gib or 0.0, f"GPU {smallest.index}, {smallest.name}, from nvidia-smi")
