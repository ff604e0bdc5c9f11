"""A training run, from a validated config to the job's exit code.

Choose the topology -> the plan -> check this machine against it (packages, GPUs, memory; launcher.run.preflight)
-> guard `output_dir` (no silent resume or overwrite; launcher.run.rundir) -> the LLaMA-Factory arguments and the
launch (launcher.plan.launch) -> `--dry-run` prints them, else record `<output_dir>/dpo-launch/` (with the plan)
and run the job under supervision (launcher.run.supervise), passing its exit code through.

Faults: `--resume` picks the last *complete* checkpoint and first drops the TensorBoard records,
trainer_log.jsonl and alerts.jsonl lines logged after it (launcher.run.rewind), so no step shows twice.
Ctrl-C / SIGTERM make every rank save a checkpoint before stopping (launcher.worker.graceful_stop;
exit 130 / 143).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from launcher.check.validation import ValidationResult
from launcher.errors import EXIT_OK
from launcher.layout import logs_dir, tensorboard_dir
from launcher.lf.deepspeed import zero_settings
from launcher.observe.monitor import attach
from launcher.plan.build import build_plan
from launcher.plan.gpus import gpu_memory
from launcher.plan.launch import (
    absolute_output_dir,
    describe,
    launch_for_node,
    resolve_args,
)
from launcher.plan.topology import choose_topology
from launcher.run.preflight import detect_machine, preflight
from launcher.run.rundir import (
    clear_previous_run,
    guard_output_dir,
    record_run,
    rewind_to_checkpoint,
)
from launcher.run.supervise import supervise

Consent = Literal["resume", "overwrite"] | None


def start_run(result: ValidationResult, launch_flags: Mapping[str, Any], cwd: Path, env: Mapping[str, str],
              *, consent: Consent = None, dry_run: bool = False, monitor: bool = True,
              gpu_memory_flag: str | None = None, check_memory: bool = True) -> int:
    """Run the job `result` validated; its exit code. Raises a UserError before anything starts when it cannot."""
    assert result.config is not None, "start a config that loaded"  # callers refuse a result that is not ok
    values = result.config.values
    machine = detect_machine(env)
    gpus = machine.gpus
    topology = choose_topology(launch_flags, env, gpus)
    plan = build_plan(result, topology, cwd, env, gpu_memory=gpu_memory(gpu_memory_flag, machine.details))
    preflight(result.config, machine, zero_settings(values, cwd), plan, env, check_memory=check_memory)
    output_dir = absolute_output_dir(values, cwd)
    resolved = resolve_args(values, output_dir, guard_output_dir(output_dir, values, consent))
    spec = launch_for_node(resolved, topology, cwd, env, gpus=gpus)
    if dry_run:
        print(describe(spec))
        return EXIT_OK
    if consent == "overwrite":
        clear_previous_run(output_dir)
    record_run(resolved, cwd, result.data_summary, plan)
    if consent == "resume":
        rewind_to_checkpoint(output_dir, Path(resolved["resume_from_checkpoint"]))
    print(f"dpo-launch train: run directory {output_dir}; TensorBoard: tensorboard --logdir "
          f"{tensorboard_dir(output_dir)}", flush=True)
    view = attach(output_dir) if monitor else None
    try:
        return supervise(spec, logs_dir(output_dir), cwd=cwd, output_dir=output_dir)
    finally:
        if view is not None:
            view.stop()
