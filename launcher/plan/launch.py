"""The launch as data: argv and environment for one node, built by pure functions and launched elsewhere.

Nothing here runs a process, reads the clock or imports torch; `plan` prints what `train` will run from
the same `build_launch`. One process runs the worker directly; anything distributed (several processes,
several nodes, DeepSpeed) goes through the interpreter's own torchrun, `torch.distributed.run`, so a
`torchrun` elsewhere on PATH (or none) does not matter; it is started as `python -m launcher.run.torchrun_quiet`,
which runs torchrun's `main` with the same arguments but ends quietly on Ctrl-C / SIGTERM instead of with a
traceback. Every path is one argv element: no shell, no `.split()` (LLaMA-Factory's own launcher splits on
whitespace, docs/upstream-notes.md#launcher-argv).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from launcher import PACKAGE_ROOT
from launcher.layout import RESOLVED_CONFIG, logs_dir, run_dir, tensorboard_dir
from launcher.plan.topology import Topology, TrainRefused

WORKER_MODULE = "launcher.worker"
TORCHRUN_MODULE = "launcher.run.torchrun_quiet"  # torch.distributed.run without its traceback on a signal
GRACE_SECONDS = 60.0  # time for ranks to save a checkpoint and exit after Ctrl-C / SIGTERM
# LLaMA-Factory switches that reroute training to other trainers (docs/upstream-notes.md#rerouting-switches);
# cleared so the worker
# always runs the v0 DPO/KTO path that dpo-launch validated.
REROUTING_SWITCHES = ("USE_V1", "USE_MCA", "USE_MEGATRON_BRIDGE", "USE_RAY", "USE_KT")
# torchrun prefixes each teed line with this; the supervisor splits the stream into logs/rank-<N>.log.
RANK_PREFIX_TEMPLATE = "[rank${rank}]: "

Device = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class LaunchSpec:
    """One node's launch: the argv to exec (no shell) and its full environment, plus what changed in it."""

    argv: list[str]
    env: dict[str, str]
    env_set: dict[str, str] = field(default_factory=dict)
    env_unset: tuple[str, ...] = ()
    distributed: bool = False
    log_dir: Path | None = None

    def to_dict(self) -> dict:
        """The launch as JSON-ready data (`plan --format json`); the environment as the changes made."""
        return {"argv": list(self.argv), "env_set": dict(self.env_set), "env_unset": list(self.env_unset),
                "distributed": self.distributed}


def build_launch(topology: Topology, args_file: Path, output_dir: Path, python: str,
                 base_env: Mapping[str, str], device: Device = "cpu", force_torchrun: bool = False) -> LaunchSpec:
    """argv and env that start this node's ranks of the worker on `args_file`.

    `force_torchrun` makes a single process distributed too (DeepSpeed refuses to run without it).
    """
    distributed = force_torchrun or topology.world_size > 1 or topology.elastic
    worker = ["-m", WORKER_MODULE, "--args-file", str(args_file)]
    torchrun_logs = logs_dir(output_dir) / "torchrun"
    if distributed:
        argv = [python, "-m", TORCHRUN_MODULE, *torchrun_arguments(topology, torchrun_logs), *worker]
    else:
        argv = [python, *worker]
    env_set = launch_env_changes(base_env, output_dir, device, distributed)
    env = {k: v for k, v in base_env.items() if k not in REROUTING_SWITCHES}
    env.update(env_set)
    unset = tuple(k for k in REROUTING_SWITCHES if k in base_env)
    return LaunchSpec(argv, env, env_set, unset, distributed, torchrun_logs if distributed else None)


def torchrun_arguments(topology: Topology, log_root: Path) -> list[str]:
    """torchrun's own options: the topology, then per-rank log files teed to the console."""
    args = ["--nnodes", str(topology.nnodes), "--nproc_per_node", str(topology.nproc_per_node)]
    if topology.elastic:
        endpoint = topology.rdzv_endpoint or f"{topology.master_addr}:{topology.master_port}"
        args += ["--rdzv_backend", str(topology.rdzv_backend), "--rdzv_id", topology.rdzv_id or "dpo-launch",
                 "--rdzv_endpoint", endpoint]
    else:
        args += ["--node_rank", str(topology.node_rank), "--master_addr", topology.master_addr,
                 "--master_port", str(topology.master_port)]
    # --tee 3: each rank's stdout and stderr go to <log_root>/<run id>/attempt_0/<local rank>/ and, prefixed
    # with the rank, to the console, where the supervisor splits them into logs/rank-<N>.log.
    return args + ["--log_dir", str(log_root), "--tee", "3"]


def launch_env_changes(base_env: Mapping[str, str], output_dir: Path, device: Device,
                       distributed: bool) -> dict[str, str]:
    """The variables dpo-launch sets on top of the caller's environment."""
    changes = {
        # transformers 5.x ignores `logging_dir`; this decides where TensorBoard events go
        # (docs/upstream-notes.md#tensorboard-directory).
        "TENSORBOARD_LOGGING_DIR": str(tensorboard_dir(output_dir)),
        "PYTHONPATH": _prepend_path(str(PACKAGE_ROOT), base_env.get("PYTHONPATH", "")),
        # Ranks write through pipes and log files; unbuffered output keeps the console and logs live.
        "PYTHONUNBUFFERED": "1",
    }
    if device == "cpu" and "OMP_NUM_THREADS" not in base_env:
        # Two threads per process on a small CPU are ~50x slower than one (docs/upstream-notes.md#cpu-threads).
        changes["OMP_NUM_THREADS"] = "1"
    if distributed:
        changes["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] = RANK_PREFIX_TEMPLATE
        if "TORCH_ELASTIC_SHUTDOWN_TIMEOUT" not in base_env:
            changes["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = str(shutdown_timeout())
    return changes


def shutdown_timeout() -> int:
    """Seconds torchrun gives ranks to save a checkpoint after Ctrl-C / SIGTERM before it SIGKILLs them (30
    by default, torch/distributed/launcher/api.py): most of the supervisor's own grace period, so a rank that
    is saving is not killed early, and torchrun still reports before the supervisor escalates."""
    return int(GRACE_SECONDS) - 5


def describe(spec: LaunchSpec) -> str:
    """The launch for humans: the environment changes, then the command (quoted for display only)."""
    lines = ["environment:"]
    lines += [f"  {key}={shlex.quote(value)}" for key, value in sorted(spec.env_set.items())]
    lines += [f"  unset {key}" for key in spec.env_unset]
    lines += ["command:", f"  {shlex.join(spec.argv)}"]
    return "\n".join(lines)


def _prepend_path(entry: str, current: str) -> str:
    parts = [p for p in current.split(os.pathsep) if p]
    return os.pathsep.join([entry] + [p for p in parts if p != entry])


def launch_for_node(values: Mapping[str, Any], topology: Topology, cwd: Path, base_env: Mapping[str, str],
                    gpus: int, args_file: Path | None = None) -> LaunchSpec:
    """One node's LaunchSpec for this config, exactly as `train` runs it (`plan` shows the same). The ranks read
    `args_file` (default: the run directory's resolved_config.json)."""
    output_dir = absolute_output_dir(values, cwd)
    args_file = args_file or run_dir(output_dir) / RESOLVED_CONFIG
    return build_launch(topology, args_file, output_dir, sys.executable, base_env,
                        device="cuda" if gpus else "cpu", force_torchrun=bool(values.get("deepspeed")))


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
