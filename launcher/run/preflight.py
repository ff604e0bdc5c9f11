"""What `train` checks on the machine that runs the job, before it writes or starts anything.

`validate` can only note these (the config may run elsewhere); here they are enforced, without importing torch:
- packages the config needs (launcher/lf/requirements.py), found with `find_spec` and their installed versions
  read from package metadata, each refusal with its install command;
- DeepSpeed's CPU Adam op for optimizer offload: prebuilt, or ninja, a C++ compiler (and nvcc on GPUs) to build it;
- GPUs: a CUDA GPU for bf16/fp16/quantization/fa2, compute capability 8.0 for bf16 and fa2 (nvidia-smi);
- memory: the plan's per-GPU estimate against the smallest GPU's memory (or --gpu-memory), with the ways out.

The machine is read at four boundaries, which tests fake: `find_spec`, `distribution_version` (package metadata),
`launcher.plan.topology.visible_gpus` (device nodes) and `launcher.plan.gpus.nvidia_smi_output`.
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _metadata_version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from launcher.check.config import LoadedConfig
from launcher.check.diagnostics import ERROR, NOTE, Diagnostic, has_errors, render_text
from launcher.check.validation import sort_by_location
from launcher.lf.deepspeed import ZeroSettings
from launcher.lf.requirements import CPU_ADAM_OP, Need, hardware_needs, needs_cpu_adam, package_needs
from launcher.plan.gpus import Gpu, detect_gpus
from launcher.plan.render import fit_lines
from launcher.plan.topology import TrainRefused, visible_gpus
from launcher.versions import at_least

PRECISION_KEYS = ("bf16", "fp16", "pure_bf16", "bf16_full_eval", "fp16_full_eval", "tf32")


def distribution_version(name: str) -> str | None:
    try:
        return _metadata_version(name)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Machine:
    gpus: int  # CUDA devices this process can use (0 with a CPU-only torch)
    details: list[Gpu] | None  # from nvidia-smi; None where it could not be asked


def detect_machine(env: Mapping[str, str]) -> Machine:
    """The CUDA device count and, where there are devices, their details; None when nvidia-smi cannot say which
    GPUs this process sees (no nvidia-smi, or CUDA_VISIBLE_DEVICES naming MIG slices it does not list)."""
    gpus = visible_gpus(env)
    if not gpus:
        return Machine(0, [])
    return Machine(gpus, detect_gpus(env) or None)


def preflight(loaded: LoadedConfig, machine: Machine, zero: ZeroSettings, plan: dict[str, Any],
              env: Mapping[str, str], check_memory: bool = True) -> None:
    """Print what this machine lacks for the run and raise TrainRefused; print notes and return when nothing."""
    found = machine_problems(loaded, machine, zero, plan, env, check_memory)
    memory = plan["memory"]
    if not found:
        return
    render_text(sort_by_location(found), sys.stdout)
    if check_memory and memory.get("fits") is False:
        print("\n".join(fit_lines(memory)))
    if has_errors(found):
        raise TrainRefused("this machine cannot run the config as it is; nothing was started")


def machine_problems(loaded: LoadedConfig, machine: Machine, zero: ZeroSettings, plan: dict[str, Any],
                     env: Mapping[str, str], check_memory: bool = True) -> list[Diagnostic]:
    """What this machine lacks for the run (errors: `train` refuses) and what it could not check (notes); the one
    decision `preflight` enforces and `plan` reports (launcher.run.readiness)."""
    found = package_problems(loaded, zero) + cpu_adam_problems(loaded, zero, machine, env)
    found += hardware_problems(loaded, machine)
    memory = plan["memory"]
    if check_memory and memory.get("fits") is False:
        found.append(loaded.diagnostic(ERROR, "out-of-memory", f"the plan's estimate, {memory['total_gib']:.2f} GiB "
                                       f"per GPU, is more than the {memory['gpu_memory']['gib']:.2f} GiB of "
                                       f"{memory['gpu_memory']['source']}", hint="take one of the ways out below, or "
                                       "pass --no-memory-check to start anyway (the estimate is rough)"))
    return found


# --- packages -------------------------------------------------------------------------------------------------


def package_problems(loaded: LoadedConfig, zero: ZeroSettings) -> list[Diagnostic]:
    """One error per package the config needs that is missing, too old or a known-broken version."""
    found = []
    for need in package_needs(loaded.values, zero):
        problem = _package_problem(need)
        if problem:
            package = need.package
            assert package is not None  # package_needs returns only needs with a package
            found.append(loaded.diagnostic(ERROR, "missing-package",
                                           f"{need.setting} needs {package.wanted} ({need.why}), but {problem} on "
                                           "this machine", need.key, hint=f"install it: {package.install()}"))
    return found


def _package_problem(need: Need) -> str | None:
    package = need.package
    assert package is not None
    installed = distribution_version(package.distribution)
    if installed is None or find_spec(package.module.split(".")[0]) is None:
        return f"{package.distribution} is not installed"
    if package.minimum and not at_least(installed, package.minimum):
        return f"{package.distribution} {installed} is installed"
    if installed in package.broken:
        return f"{package.distribution} {installed} is installed"
    return None


def cpu_adam_problems(loaded: LoadedConfig, zero: ZeroSettings, machine: Machine,
                      env: Mapping[str, str]) -> list[Diagnostic]:
    """Optimizer offload runs DeepSpeedCPUAdam: prebuilt, or compiled at the first step with ninja and a C++
    compiler (and the CUDA toolkit on a GPU machine: deepspeed/ops/op_builder/builder.py `jit_load`)."""
    if not needs_cpu_adam(zero) or _prebuilt_ops().get(CPU_ADAM_OP):
        return []
    path = env.get("PATH")
    lacking = [what for what, present in (
        ("ninja", shutil.which("ninja", path=path)),
        ("a C++ compiler (c++ or $CXX)", shutil.which(env.get("CXX") or "c++", path=path)),
        ("the CUDA toolkit's nvcc (CUDA_HOME)", not machine.gpus or _nvcc(env))) if not present]
    if not lacking:
        return []
    return [loaded.diagnostic(
        ERROR, "missing-package", "deepspeed offloads the optimizer to CPU with DeepSpeedCPUAdam, which this "
        f"deepspeed install did not prebuild, and compiling it at the first step needs {' and '.join(lacking)}, "
        "missing on this machine", "deepspeed",
        hint="pip install ninja (and a C++ compiler), or reinstall DeepSpeed with its ops prebuilt: "
             "DS_BUILD_CPU_ADAM=1 pip install deepspeed; or use a DeepSpeed config without offload_optimizer")]


def _prebuilt_ops() -> dict[str, bool]:
    """deepspeed/git_version_info_installed.py's `installed_ops`, read as text (importing deepspeed is heavy)."""
    spec = find_spec("deepspeed")
    if spec is None or not spec.origin:
        return {}
    try:
        tree = ast.parse((Path(spec.origin).parent / "git_version_info_installed.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "installed_ops" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def _nvcc(env: Mapping[str, str]) -> bool:
    """nvcc where torch.utils.cpp_extension looks for CUDA_HOME: CUDA_HOME/CUDA_PATH, PATH, /usr/local/cuda."""
    home = env.get("CUDA_HOME") or env.get("CUDA_PATH")
    if home:
        return os.path.isfile(os.path.join(home, "bin", "nvcc"))
    return bool(shutil.which("nvcc", path=env.get("PATH"))) or os.path.isfile("/usr/local/cuda/bin/nvcc")


# --- GPUs -----------------------------------------------------------------------------------------------------


def hardware_problems(loaded: LoadedConfig, machine: Machine) -> list[Diagnostic]:
    """No CUDA GPU where one is needed, a GPU older than the needed compute capability, or a note when
    nvidia-smi could not tell."""
    needs = hardware_needs(loaded.values)
    if not needs:
        return []
    if not machine.gpus:
        return [_no_gpu(loaded, need) for need in needs]
    if machine.details is None:
        return [loaded.diagnostic(NOTE, "gpu-details-unknown", "nvidia-smi could not tell the compute capability and "
                                  "memory of the GPUs this process sees: not checked here")]
    return [problem for need in needs for problem in _too_old(loaded, need, machine.details)]


def _no_gpu(loaded: LoadedConfig, need: Need) -> Diagnostic:
    if need.key in PRECISION_KEYS:
        return loaded.diagnostic(ERROR, "needs-gpu", f"{need.key}: true needs a CUDA GPU, but this machine has none "
                                 "visible (or torch is a CPU-only build)", need.key,
                                 hint=f"set {need.key}: false (CPU trains in fp32) or run on a GPU machine")
    return loaded.diagnostic(ERROR, "needs-gpu", f"{need.setting} needs a CUDA GPU ({need.why}), but this machine "
                             "has none visible (or torch is a CPU-only build)", need.key,
                             hint=f"remove {need.key} or run on a GPU machine")


def _too_old(loaded: LoadedConfig, need: Need, gpus: list[Gpu]) -> list[Diagnostic]:
    wanted = need.compute_capability
    if wanted is None:
        return []
    old = [gpu for gpu in gpus if gpu.compute_capability is not None and gpu.compute_capability < wanted]
    if not old:
        return []
    names = ", ".join(f"GPU {gpu.index} ({gpu.name}, {_cc(gpu.compute_capability)})" for gpu in old)
    instead = {"flash_attn": "flash_attn: sdpa (or auto)", "tf32": "tf32: false"}.get(
        need.key, "fp16: true (watch for NaN rewards) or fp32")
    return [loaded.diagnostic(ERROR, "gpu-too-old", f"{need.setting} needs compute capability {_cc(wanted)} or "
                              f"higher ({need.why}), but this machine has {names}", need.key,
                              hint=f"use {instead} on this GPU, or run on an Ampere or newer GPU")]


def _cc(capability: tuple[int, int] | None) -> str:
    return "unknown" if capability is None else f"{capability[0]}.{capability[1]}"
