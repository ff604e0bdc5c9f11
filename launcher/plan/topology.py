"""Where the ranks run: the topology the launch flags (or SLURM) ask for, checked against this machine.

`plan` and `train` choose it with the same function, so the plan shows the launch `train` makes. Nothing
here imports torch: the GPUs are counted from the NVIDIA driver's device nodes.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from launcher.errors import UsageError, UserError
from launcher.versions import installed_version

DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500
# The launch flags' names (torchrun's), as `dpo-launch plan` and `train` take them.
LAUNCH_FLAGS = ("nproc_per_node", "nnodes", "node_rank", "master_addr", "master_port", "rdzv_backend", "rdzv_id",
                "rdzv_endpoint")


class TrainRefused(UserError):
    """The run cannot start as asked on this machine; the message says why and what to do."""


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


def topology_from_flags(env: Mapping[str, str], **flags: Any) -> Topology:
    """The Topology the flags ask for; SLURM's when no flag is given inside an allocation. UsageError if unusable."""
    given: dict[str, Any] = {name: flags.get(name) for name in LAUNCH_FLAGS if flags.get(name) is not None}
    slurm = None if given else Topology.from_slurm(env)
    topology = slurm or Topology(**given)
    problems = topology.problems()
    if problems:
        raise UsageError("; ".join(problems))
    return topology


def choose_topology(launch_flags: Mapping[str, Any], env: Mapping[str, str], gpus: int) -> Topology:
    """The flags' topology (or SLURM's); on GPUs nproc defaults to every visible GPU, on CPU to 1.
    A single-node distributed run gets a free port unless one was given (two runs must not collide)."""
    given_nproc = launch_flags.get("nproc_per_node")
    topology = topology_from_flags(env, **launch_flags)
    from_slurm = not any(v is not None for v in launch_flags.values()) and "SLURM_JOB_ID" in env
    if given_nproc is None and not from_slurm and gpus > 1:
        topology = replace(topology, nproc_per_node=gpus)
    if gpus and topology.nproc_per_node > gpus:
        raise TrainRefused(f"--nproc-per-node {topology.nproc_per_node} is more than the {gpus} GPU(s) visible "
                           f"on this machine (CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    if topology.nnodes == 1 and launch_flags.get("master_port") is None and not from_slurm:
        topology = replace(topology, master_port=free_port())
    return topology


def planned_topology(launch_flags: Mapping[str, Any], env: Mapping[str, str], gpus: int) -> Topology:
    """The topology `train` would choose here, with a fixed port: on one node `train` picks a free port at
    launch time unless --master-port is given, which a plan cannot know."""
    try:
        topology = choose_topology(launch_flags, env, gpus)
    except TrainRefused as exc:
        raise UsageError(str(exc)) from None
    if launch_flags.get("master_port") is None and topology.nnodes == 1:
        topology = replace(topology, master_port=DEFAULT_MASTER_PORT)
    return topology


def free_port() -> int:
    """A TCP port free on this machine right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def visible_gpus(env: Mapping[str, str]) -> int:
    """CUDA devices this process could use, without importing torch: NVIDIA device nodes, narrowed by
    CUDA_VISIBLE_DEVICES, and zero when the installed torch is a CPU-only build."""
    if "+cpu" in (installed_version("torch") or ""):
        return 0
    present = len(list(Path("/proc/driver/nvidia/gpus").glob("*"))) or len(
        [p for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit()])
    selection = env.get("CUDA_VISIBLE_DEVICES")
    if selection is None or not present:
        return present
    chosen = [d for d in selection.split(",") if d.strip() and not d.strip().startswith("-")]
    return min(present, len(chosen))
