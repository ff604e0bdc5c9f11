"""Arguments shared by the subcommands that read a config (validate, plan, train)."""

from __future__ import annotations

import argparse

from launcher.errors import UsageError


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="LLaMA-Factory config (.yaml/.yml/.json)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides applied after the config, as `llamafactory-cli train` takes them")
    parser.add_argument("--config_file", "--config-file", dest="config_file", metavar="PATH",
                        help="alias of the positional CONFIG (LLaMA-Factory's docs show it)")


def pop_config_path(config: str | None, overrides: list[str], config_file: str | None) -> tuple[str, list[str]]:
    """Resolve CONFIG vs --config_file; with --config_file every positional is an override."""
    if config_file is not None:
        return config_file, ([config] if config is not None else []) + list(overrides)
    if config is None:
        raise UsageError("a config file is required: dpo-launch <command> CONFIG.yaml [key=value ...]")
    return config, list(overrides)


# --- launch flags, shared by plan and train so that both read the same topology ---------------------------

# dest -> the flag `train` takes, for printing a command that gives `train` the same launch flags
LAUNCH_FLAGS = {"nproc_per_node": "--nproc-per-node", "nnodes": "--nnodes", "node_rank": "--node-rank",
                "master_addr": "--master-addr", "master_port": "--master-port", "rdzv_backend": "--rdzv-backend",
                "rdzv_id": "--rdzv-id", "rdzv_endpoint": "--rdzv-endpoint"}


def train_command(config_path: str, overrides: list[str], launch_flags: dict, gpu_memory_flag: str | None) -> list[str]:
    """`dpo-launch train` with the config, the `key=value` overrides and the launch flags given to `plan`."""
    flags = [item for dest, flag in LAUNCH_FLAGS.items() if launch_flags.get(dest) is not None
             for item in (flag, str(launch_flags[dest]))]
    if gpu_memory_flag is not None:
        flags += ["--gpu-memory", gpu_memory_flag]
    return ["dpo-launch", "train", config_path, *overrides, *flags]


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The topology flags (torchrun's names, dashes or underscores); SLURM variables fill in when none is given."""
    group = parser.add_argument_group("launch", "where the ranks run (default: one process on this machine)")
    group.add_argument("--nproc-per-node", "--nproc_per_node", dest="nproc_per_node", type=int, metavar="N",
                       help="processes (GPUs) per node")
    group.add_argument("--nnodes", type=int, metavar="M", help="number of nodes")
    group.add_argument("--node-rank", "--node_rank", dest="node_rank", type=int, metavar="R",
                       help="this node's rank, 0..M-1")
    group.add_argument("--master-addr", "--master_addr", dest="master_addr", metavar="A",
                       help="address of node 0 (default 127.0.0.1)")
    group.add_argument("--master-port", "--master_port", dest="master_port", type=int, metavar="P",
                       help="port on node 0, the same on every node (default 29500)")
    group.add_argument("--rdzv-backend", "--rdzv_backend", dest="rdzv_backend", metavar="BACKEND",
                       help="torchrun rendezvous backend (e.g. c10d) for an elastic launch")
    group.add_argument("--rdzv-id", "--rdzv_id", dest="rdzv_id", metavar="ID", help="rendezvous job id")
    group.add_argument("--rdzv-endpoint", "--rdzv_endpoint", dest="rdzv_endpoint", metavar="HOST:PORT",
                       help="rendezvous endpoint (default MASTER_ADDR:MASTER_PORT)")


def add_gpu_memory_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu-memory", "--gpu_memory", dest="gpu_memory_flag", metavar="SIZE",
                        help="memory of each GPU to plan for, e.g. 80GiB or 24GB (default: the smallest visible "
                             "GPU's, from nvidia-smi; none on a machine without GPUs)")
