"""What `dpo-launch train` would refuse on this machine, decided by train's own checks, without starting anything.

`plan` prints it beside the exact `train` command. Each check is the function `train` itself enforces:
the machine (packages, GPUs, memory: launcher.run.preflight.machine_problems), the output_dir (a previous run
without --resume/--overwrite, contradicting settings: launcher.run.rundir.output_dir_refusal) and the run's lock
(another launcher running it: launcher.run.ownership.lock_refusal). None of them writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launcher.check.config import LoadedConfig
from launcher.check.diagnostics import ERROR, Diagnostic
from launcher.lf.deepspeed import zero_settings
from launcher.plan.launch import absolute_output_dir
from launcher.plan.topology import Topology, TrainRefused
from launcher.run.ownership import lock_refusal
from launcher.run.preflight import Machine, machine_problems
from launcher.run.rundir import output_dir_refusal


def train_refusals(loaded: LoadedConfig, plan: dict[str, Any], machine: Machine, topology: Topology, cwd: Path,
                   env: Mapping[str, str], check_memory: bool = True, consent: str | None = None) -> list[Diagnostic]:
    """The errors `train` would stop at before starting anything here, each located in the config."""
    values = loaded.values
    found = [d for d in machine_problems(loaded, machine, zero_settings(values, cwd), plan, env, check_memory)
             if d.severity == ERROR]
    try:
        output_dir = absolute_output_dir(values, cwd)
    except TrainRefused as exc:
        return [*found, loaded.diagnostic(ERROR, "no-output-dir", str(exc))]
    previous = output_dir_refusal(output_dir, values, consent, cwd)
    if previous:
        found.append(loaded.diagnostic(ERROR, "output-dir-holds-run", previous, "output_dir"))
    holder = lock_refusal(output_dir, topology)
    if holder:
        found.append(loaded.diagnostic(ERROR, "run-in-use", holder, "output_dir"))
    return found
