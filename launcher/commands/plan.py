"""`dpo-launch plan CONFIG [key=value ...] [launch flags]`: what `train` would do, without importing torch.

Validates first and refuses on errors, then prints the reference model, the loss with its formula and
parameters, batch and steps, a per-GPU memory estimate and the exact launch (argv and environment) per node.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from launcher.cli import UsageError
from launcher.commands.common import add_config_arguments, add_launch_arguments, pop_config_path

EXIT_OK, EXIT_INVALID = 0, 1


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("plan", help="show the reference model, loss, batch, memory and launch",
                                   description=__doc__)
    add_config_arguments(parser)
    add_launch_arguments(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument("--no-data", dest="check_data", action="store_false",
                        help="skip dataset_info.json and the records (steps then stay unknown)")
    parser.set_defaults(handler=run)


def run(config: str | None, overrides: list[str], config_file: str | None = None, format: str = "text",
        check_data: bool = True, **launch_flags: Any) -> int:
    from launcher.diagnostics import render_json, render_text
    from launcher.validation import validate

    config_path, overrides = pop_config_path(config, overrides, config_file)
    cwd, env = Path.cwd(), dict(os.environ)
    topology = plan_topology(launch_flags, env)
    result = validate(config_path, overrides, check_data=check_data, cwd=cwd)
    if not result.ok:
        if format == "json":
            render_json(result.diagnostics, sys.stdout)
        else:
            render_text(result.diagnostics, sys.stdout, checked=config_path)
        print(f"dpo-launch plan: {config_path} has errors; fix them first (dpo-launch validate shows the same)",
              file=sys.stderr)
        return EXIT_INVALID
    from launcher.commands.train import TrainRefused

    try:
        plan = build_plan(result, topology, cwd, env, check_data=check_data)
    except TrainRefused as exc:  # what `train` would refuse too (e.g. no output_dir to run in)
        print(f"dpo-launch plan: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if format == "json":
        json.dump(plan, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        from launcher.plan_report import render_plan

        render_plan(plan, sys.stdout)
    return EXIT_OK


def build_plan(result, topology, cwd: Path, base_env: dict[str, str] | None = None,
               check_data: bool = True) -> dict[str, Any]:
    """The plan as stable JSON data: what `--format json` prints and what `train` writes to plan.json."""
    from launcher.dataset import local_dataset_sizes
    from launcher.memory import estimate_memory, zero_settings
    from launcher.resolve import as_dict, resolve_batch, resolve_loss_plan, resolve_reference

    loaded = result.config
    values = loaded.values
    zero = zero_settings(values, cwd)
    reference = resolve_reference(values, zero.stage)
    loss = resolve_loss_plan(values)
    sizes = local_dataset_sizes(loaded, cwd, result.data_summary) if check_data else {}
    batch = resolve_batch(values, topology.world_size, sizes)
    memory = estimate_memory(values, reference, topology.world_size, cwd, zero)
    findings = [loaded.diagnostic(f.severity, f.code, f.message, f.key, hint=f.hint)
                for f in (*reference.warnings, *loss.findings)]
    diagnostics = _unique([*result.diagnostics, *findings])
    reference_data = as_dict(reference)
    reference_data.pop("warnings")
    loss_data = as_dict(loss)
    loss_data.pop("findings")
    return {
        "config": loaded.file,
        "reference": reference_data,
        "loss": loss_data,
        "batch": as_dict(batch),
        "memory": _memory_data(memory),
        "launch": launch_plan(values, topology, cwd, os.environ if base_env is None else base_env),
        "diagnostics": [asdict(d) for d in diagnostics],
    }


def _unique(diagnostics: list) -> list:
    """Validate may already report what resolve finds (e.g. the SFT-adapter trap): keep one per code and key."""
    seen, kept = set(), []
    for diagnostic in diagnostics:
        key = (diagnostic.code, diagnostic.path, diagnostic.file, diagnostic.record)
        if key not in seen:
            seen.add(key)
            kept.append(diagnostic)
    return kept


def _memory_data(memory) -> dict[str, Any]:
    return {
        "zero": memory.zero, "parameters": memory.parameters, "trainable_parameters": memory.trainable_parameters,
        "model_source": memory.model_source,
        "terms": [{"name": t.name, "gib": t.gib, "formula": t.formula} for t in memory.terms],
        "total_gib": memory.total_gib,
        "by_zero_stage": [{"zero": label, "total_gib": total} for label, total in memory.by_zero_stage],
        "notes": list(memory.notes),
        "estimate": True,
    }


def plan_topology(launch_flags: dict[str, Any], env: dict[str, str]):
    """The topology `train` would choose here (nproc defaults to the visible GPUs), with a fixed port: on one
    node `train` picks a free port at launch time unless --master-port is given, which a plan cannot know."""
    from launcher.commands.train import TrainRefused, choose_topology, visible_gpus
    from launcher.launch import DEFAULT_MASTER_PORT

    try:
        topology = choose_topology(launch_flags, env, visible_gpus(env))
    except TrainRefused as exc:
        raise UsageError(str(exc)) from None
    if launch_flags.get("master_port") is None and topology.nnodes == 1:
        topology = replace(topology, master_port=DEFAULT_MASTER_PORT)
    return topology


def launch_plan(values: dict[str, Any], topology, cwd: Path, base_env: dict[str, str]) -> dict[str, Any]:
    """argv and environment for every node, from the builder `train` runs (commands/train.py launch_for_node)."""
    from launcher.commands.train import launch_for_node, visible_gpus

    gpus = visible_gpus(base_env)
    nodes = [launch_for_node(values, topology.for_node(rank), cwd, base_env, gpus=gpus)
             for rank in range(topology.nnodes)]
    return {"topology": asdict(topology), "world_size": topology.world_size, "device": "cuda" if gpus else "cpu",
            "free_port_at_launch": topology.nnodes == 1 and topology.world_size > 1,
            "nodes": [{"node_rank": rank, **spec.to_dict()} for rank, spec in enumerate(nodes)]}


