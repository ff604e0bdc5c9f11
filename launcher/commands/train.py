"""`dpo-launch train CONFIG [key=value ...] [launch flags]`: validate, guard the output_dir, record the run,
launch the worker on every rank and supervise it to the end.

The config stays a plain LLaMA-Factory config: everything launcher-specific is a flag here. Steps:
validate (refuse on errors) -> check this machine (GPUs, precision) -> resolve the LF argument dict ->
guard `output_dir` (no silent resume or overwrite; launcher.rundir) -> build argv/env (launcher.launch) ->
`--dry-run` prints them, else write `<output_dir>/dpo-launch/` (launcher.rundir) and run (launcher.supervise),
passing the job's exit code through.

Faults: `--resume` picks the last *complete* checkpoint (one with trainer_state.json) and first drops the
TensorBoard records, trainer_log.jsonl and alerts.jsonl lines logged after it (launcher.events_rewind), so no
step shows twice. Ctrl-C / SIGTERM make every rank save a checkpoint before stopping (launcher.graceful_stop;
exit 130 / 143). `--stop-on` and `--alert-threshold` reach the ranks' alert callbacks as DPO_LAUNCH_STOP_ON /
DPO_LAUNCH_ALERT_THRESHOLDS.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from launcher.commands.common import (
    add_config_arguments,
    add_launch_arguments,
    pop_config_path,
    topology_from_flags,
)

EXIT_OK, EXIT_INVALID = 0, 1
PRECISION_KEYS = ("bf16", "fp16", "pure_bf16")


class TrainRefused(Exception):
    """The run cannot start as asked; the message says why and what to do."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="validate, then launch LLaMA-Factory training on every rank",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    add_launch_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the argv and environment, write nothing")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue from the last checkpoint-N in output_dir")
    existing.add_argument("--overwrite", action="store_true",
                          help="start over in an output_dir that holds a previous run (removes its checkpoint-* "
                               "and tensorboard/)")
    parser.add_argument("--no-monitor", dest="monitor", action="store_false",
                        help="plain log lines instead of the live metrics view")
    parser.add_argument("--stop-on", dest="stop_on", metavar="NAMES",
                        help="comma-separated health alerts that end the run after saving a checkpoint "
                             "(default: loss-not-finite; 'none': no alert stops the run)")
    parser.add_argument("--alert-threshold", dest="alert_thresholds", action="append", default=[],
                        metavar="NAME=VALUE", help="change one alert threshold (repeatable), e.g. spike_factor=5")
    parser.set_defaults(handler=run)


def run(config: str | None, overrides: list[str], config_file: str | None = None, dry_run: bool = False,
        resume: bool = False, overwrite: bool = False, monitor: bool = True, stop_on: str | None = None,
        alert_thresholds: list[str] | None = None, **launch_flags: Any) -> int:
    from launcher.diagnostics import render_text
    from launcher.validation import validate

    config_path, overrides = pop_config_path(config, overrides, config_file)
    cwd, env = Path.cwd(), dict(os.environ)
    env.update(alert_settings(stop_on, alert_thresholds or []))
    result = validate(config_path, overrides, cwd=cwd)
    if result.diagnostics:
        render_text(result.diagnostics, sys.stdout, checked=config_path)
    if not result.ok:
        print(f"dpo-launch train: {config_path} has errors; nothing was started", file=sys.stderr)
        return EXIT_INVALID
    from launcher.rundir import RunDirRefused

    try:
        return _train(result, launch_flags, cwd, env, dry_run, resume, overwrite, monitor)
    except (TrainRefused, RunDirRefused) as exc:
        print(f"dpo-launch train: error: {exc}", file=sys.stderr)
        return EXIT_INVALID


def _train(result, launch_flags: dict, cwd: Path, env: dict[str, str], dry_run: bool, resume: bool,
           overwrite: bool, monitor: bool) -> int:
    from launcher.launch import logs_dir, tensorboard_dir
    from launcher.rundir import (
        clear_previous_run,
        guard_output_dir,
        record_run,
        rewind_to_checkpoint,
    )

    values = result.config.values
    gpus = visible_gpus(env)
    check_precision(result.config, gpus)
    topology = choose_topology(launch_flags, env, gpus)
    output_dir = absolute_output_dir(values, cwd)
    consent = "resume" if resume else "overwrite" if overwrite else None
    resolved = resolve_args(values, output_dir, guard_output_dir(output_dir, values, consent))
    spec = launch_for_node(resolved, topology, cwd, env, gpus=gpus)
    if dry_run:
        from launcher.launch import describe

        print(describe(spec))
        return EXIT_OK
    if overwrite:
        clear_previous_run(output_dir)
    record_run(resolved, cwd, result.data_summary, _plan(result, topology, cwd, env))
    if resume:
        rewind_to_checkpoint(output_dir, Path(resolved["resume_from_checkpoint"]))
    print(f"dpo-launch train: run directory {output_dir}; TensorBoard: tensorboard --logdir "
          f"{tensorboard_dir(output_dir)}", flush=True)
    from launcher.supervise import supervise

    view = _attach_monitor(output_dir) if monitor else None
    try:
        return supervise(spec, logs_dir(output_dir), cwd=cwd)
    finally:
        if view is not None:
            view.stop()


# --- the machine -----------------------------------------------------------------------------------------

def visible_gpus(env: Mapping[str, str]) -> int:
    """CUDA devices this process could use, without importing torch: NVIDIA device nodes, narrowed by
    CUDA_VISIBLE_DEVICES, and zero when the installed torch is a CPU-only build."""
    if "+cpu" in _torch_version():
        return 0
    present = len(list(Path("/proc/driver/nvidia/gpus").glob("*"))) or len(
        [p for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit()])
    selection = env.get("CUDA_VISIBLE_DEVICES")
    if selection is None or not present:
        return present
    chosen = [d for d in selection.split(",") if d.strip() and not d.strip().startswith("-")]
    return min(present, len(chosen))


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""


def check_precision(loaded, gpus: int) -> None:
    """bf16/fp16 train only on CUDA here; say so up front instead of failing inside every rank."""
    from launcher.diagnostics import ERROR, render_text

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


def choose_topology(launch_flags: dict, env: Mapping[str, str], gpus: int):
    """The flags' topology (or SLURM's); on GPUs nproc defaults to every visible GPU, on CPU to 1.
    A single-node distributed run gets a free port unless one was given (two runs must not collide)."""
    given_nproc = launch_flags.get("nproc_per_node")
    topology = topology_from_flags(dict(env), **launch_flags)
    from_slurm = not any(v is not None for v in launch_flags.values()) and "SLURM_JOB_ID" in env
    if given_nproc is None and not from_slurm and gpus > 1:
        topology = replace(topology, nproc_per_node=gpus)
    if gpus and topology.nproc_per_node > gpus:
        raise TrainRefused(f"--nproc-per-node {topology.nproc_per_node} is more than the {gpus} GPU(s) visible "
                           f"on this machine (CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    if topology.nnodes == 1 and launch_flags.get("master_port") is None and not from_slurm:
        topology = replace(topology, master_port=free_port())
    return topology


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alert_settings(stop_on: str | None, thresholds: list[str]) -> dict[str, str]:
    """--stop-on and --alert-threshold, checked here (a usage error, exit 2) and handed to every rank's
    callbacks (launcher.metrics) through the environment."""
    from launcher.alerts import parse_stop_on, parse_thresholds
    from launcher.cli import UsageError
    from launcher.metrics import STOP_ON_ENV, THRESHOLDS_ENV

    try:
        names = parse_stop_on(stop_on)  # its message starts with "--stop-on: "
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        parse_thresholds(thresholds)
    except ValueError as exc:
        raise UsageError(f"--alert-threshold: {exc}") from None
    settings = {STOP_ON_ENV: ",".join(names) or "none"}
    if thresholds:
        settings[THRESHOLDS_ENV] = ",".join(item.strip() for item in thresholds)
    return settings


def launch_for_node(values: Mapping[str, Any], topology, cwd: Path, base_env: Mapping[str, str],
                    gpus: int | None = None):
    """One node's LaunchSpec for this config, exactly as `train` runs it (`plan` shows the same)."""
    from launcher.launch import build_launch, run_dir

    output_dir = absolute_output_dir(values, cwd)
    gpus = visible_gpus(base_env) if gpus is None else gpus
    return build_launch(topology, run_dir(output_dir) / "resolved_config.json", output_dir, sys.executable,
                        base_env, device="cuda" if gpus else "cpu", force_torchrun=bool(values.get("deepspeed")))


# --- the arguments LLaMA-Factory gets ---------------------------------------------------------------------

def absolute_output_dir(values: Mapping[str, Any], cwd: Path) -> Path:
    if not values.get("output_dir"):
        raise TrainRefused("output_dir is not set; add `output_dir: <dir>` to the config (the run directory)")
    path = Path(str(values["output_dir"])).expanduser()
    return path if path.is_absolute() else cwd / path


def resolve_args(values: Mapping[str, Any], output_dir: Path, decided: Mapping[str, Any]) -> dict[str, Any]:
    """The flat argument dict the worker passes to `run_exp`: the config, TensorBoard on, output_dir absolute."""
    resolved = dict(values)
    resolved["output_dir"] = str(output_dir)
    resolved["report_to"] = with_tensorboard(values.get("report_to"))
    resolved.update(decided)
    return resolved


def with_tensorboard(report_to: Any) -> Any:
    """`report_to` plus tensorboard (transformers 5.x defaults to none; "all" already includes it)."""
    if report_to in (None, "", "none", []):
        return ["tensorboard"]
    if report_to == "all":
        return report_to
    items = list(report_to) if isinstance(report_to, (list, tuple)) else [s.strip() for s in str(report_to).split(",")]
    items = [i for i in items if i and i != "none"]
    return items if "tensorboard" in items else items + ["tensorboard"]


# --- the run directory ------------------------------------------------------------------------------------

def _plan(result, topology, cwd: Path, env: Mapping[str, str]) -> dict | None:
    """plan.json from `dpo-launch plan`'s own builder, when that command is present in this checkout."""
    try:
        from launcher.commands.plan import build_plan
    except ImportError:
        return None
    return build_plan(result, topology, cwd, dict(env))


def _attach_monitor(output_dir: Path):
    """The live metrics view (launcher.monitor) on an interactive terminal; None means plain log lines."""
    try:
        from launcher.monitor import attach
    except ImportError:  # a checkout without the monitor
        return None
    return attach(output_dir)
