"""The launch as data: argv and environment for one node, built by pure functions and launched elsewhere.

Nothing here runs a process, reads the clock or imports torch; `plan` prints what `train` will run from
the same `build_launch`. One process runs the worker directly; anything distributed (several processes,
several nodes, DeepSpeed) goes through the interpreter's own torchrun, `torch.distributed.run`, so a
`torchrun` elsewhere on PATH (or none) does not matter; it is started as `python -m launcher.torchrun_quiet`,
which runs torchrun's `main` with the same arguments but ends quietly on Ctrl-C / SIGTERM instead of with a
traceback. Every path is one argv element: no shell, no `.split()` (LLaMA-Factory's own launcher splits on
whitespace, REFERENCE.md §6.2).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

WORKER_MODULE = "launcher.worker"
TORCHRUN_MODULE = "launcher.torchrun_quiet"  # torch.distributed.run without its traceback on a signal
DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500
# The directory holding the `launcher` package, so the worker imports this checkout even when it is not
# installed (torchrun starts each rank with a fresh interpreter and the caller's cwd may be anywhere).
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# LLaMA-Factory switches that reroute training to other trainers (REFERENCE.md §1.4); cleared so the worker
# always runs the v0 DPO/KTO path that dpo-launch validated.
REROUTING_SWITCHES = ("USE_V1", "USE_MCA", "USE_MEGATRON_BRIDGE", "USE_RAY", "USE_KT")
# torchrun prefixes each teed line with this; the supervisor splits the stream into logs/rank-<N>.log.
RANK_PREFIX_TEMPLATE = "[rank${rank}]: "

Device = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class Topology:
    """Where the ranks run. Static by default; elastic (torchrun rendezvous) when `rdzv_backend` is set."""

    nnodes: int = 1
    node_rank: int = 0
    nproc_per_node: int = 1
    master_addr: str = DEFAULT_MASTER_ADDR
    master_port: int = DEFAULT_MASTER_PORT
    rdzv_backend: str | None = None
    rdzv_id: str | None = None
    rdzv_endpoint: str | None = None

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @property
    def elastic(self) -> bool:
        return self.rdzv_backend is not None

    def for_node(self, node_rank: int) -> Topology:
        return replace(self, node_rank=node_rank)

    def problems(self) -> list[str]:
        """What is wrong with this topology, as messages for a usage error (empty when it is usable)."""
        problems = []
        if self.nnodes < 1:
            problems.append(f"--nnodes must be at least 1 but got {self.nnodes}")
        if self.nproc_per_node < 1:
            problems.append(f"--nproc-per-node must be at least 1 but got {self.nproc_per_node}")
        if not 0 <= self.node_rank < max(self.nnodes, 1):
            problems.append(f"--node-rank must be in 0..{self.nnodes - 1} for --nnodes {self.nnodes} "
                            f"but got {self.node_rank}")
        if not 1 <= self.master_port <= 65535:
            problems.append(f"--master-port must be in 1..65535 but got {self.master_port}")
        return problems

    @classmethod
    def from_slurm(cls, env: Mapping[str, str]) -> Topology | None:
        """The topology of a SLURM allocation (one `dpo-launch train` per node), or None outside SLURM.

        nproc per node is the node's GPUs, else its tasks per node; the master is the first host of the
        node list; the port is derived from the job id so that every node computes the same one and two
        jobs sharing a node do not collide.
        """
        if "SLURM_JOB_ID" not in env or "SLURM_NNODES" not in env:
            return None
        nproc = _first_int(env.get("SLURM_GPUS_ON_NODE")) or _first_int(env.get("SLURM_NTASKS_PER_NODE")) or 1
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
        return cls(
            nnodes=_first_int(env["SLURM_NNODES"]) or 1,
            node_rank=_first_int(env.get("SLURM_NODEID")) or 0,
            nproc_per_node=nproc,
            master_addr=first_slurm_host(nodelist) or DEFAULT_MASTER_ADDR,
            master_port=20000 + (_first_int(env["SLURM_JOB_ID"]) or 0) % 20000,
        )


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


def run_dir(output_dir: Path) -> Path:
    """dpo-launch's own files inside the run directory (the config's `output_dir`)."""
    return Path(output_dir) / "dpo-launch"


def logs_dir(output_dir: Path) -> Path:
    return run_dir(output_dir) / "logs"


def tensorboard_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "tensorboard"


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
        # transformers 5.x ignores `logging_dir`; this decides where TensorBoard events go (REFERENCE.md §8.3).
        "TENSORBOARD_LOGGING_DIR": str(tensorboard_dir(output_dir)),
        "PYTHONPATH": _prepend_path(str(PACKAGE_ROOT), base_env.get("PYTHONPATH", "")),
        # Ranks write through pipes and log files; unbuffered output keeps the console and logs live.
        "PYTHONUNBUFFERED": "1",
    }
    if device == "cpu" and "OMP_NUM_THREADS" not in base_env:
        # Two threads per process on a small CPU are ~50x slower than one (REFERENCE.md §9.4).
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
    # imported here, not at the top: launcher.supervise imports this module
    from launcher.supervise import GRACE_SECONDS

    return int(GRACE_SECONDS) - 5


def describe(spec: LaunchSpec) -> str:
    """The launch for humans: the environment changes, then the command (quoted for display only)."""
    lines = ["environment:"]
    lines += [f"  {key}={shlex.quote(value)}" for key, value in sorted(spec.env_set.items())]
    lines += [f"  unset {key}" for key in spec.env_unset]
    lines += ["command:", f"  {shlex.join(spec.argv)}"]
    return "\n".join(lines)


def first_slurm_host(nodelist: str) -> str | None:
    """The first host of a SLURM node list: 'gpu[03-05,9],cpu1' -> 'gpu03'."""
    head = _split_top_level(nodelist.strip())[0] if nodelist.strip() else ""
    if "[" not in head:
        return head or None
    prefix, _, rest = head.partition("[")
    ranges, _, suffix = rest.partition("]")
    first = ranges.split(",")[0].split("-")[0]
    return f"{prefix}{first}{suffix}"


def _split_top_level(nodelist: str) -> list[str]:
    items, depth, start = [], 0, 0
    for index, char in enumerate(nodelist):
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            items.append(nodelist[start:index])
            start = index + 1
    return items + [nodelist[start:]]


def _first_int(value: str | None) -> int | None:
    """'4' -> 4, '2(x3)' -> 2 (SLURM's compressed per-node counts); None when absent or not a number."""
    digits = ""
    for char in (value or "").strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def _prepend_path(entry: str, current: str) -> str:
    parts = [p for p in current.split(os.pathsep) if p]
    return os.pathsep.join([entry] + [p for p in parts if p != entry])
