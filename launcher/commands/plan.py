"""`dpo-launch plan CONFIG [key=value ...] [launch flags]`: what `train` would do, without importing torch.

Validates first and refuses on errors, then prints the reference model, the loss with its formula and
parameters, batch and steps, a per-GPU memory estimate, the exact launch (argv and environment) per node, what
`train` would refuse on this machine and the `train` command with the same overrides and flags.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from launcher.check.diagnostics import render_json, render_text
from launcher.check.validation import validate
from launcher.commands.arguments import (
    add_config_arguments,
    add_gpu_memory_argument,
    add_launch_arguments,
    pop_config_path,
    train_command,
)
from launcher.errors import EXIT_OK, EXIT_USER_ERROR
from launcher.plan.build import build_plan
from launcher.plan.gpus import gpu_memory
from launcher.plan.render import render_plan
from launcher.plan.topology import planned_topology
from launcher.run.preflight import detect_machine
from launcher.run.readiness import train_refusals


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("plan", help="show the reference model, loss, batch, memory and launch",
                                   description=__doc__)
    add_config_arguments(parser)
    add_launch_arguments(parser)
    add_gpu_memory_argument(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument("--no-data", dest="check_data", action="store_false",
                        help="skip dataset_info.json and the records (steps then stay unknown)")
    parser.set_defaults(handler=run)


def run(config: str | None, overrides: list[str], config_file: str | None = None, format: str = "text",
        check_data: bool = True, gpu_memory_flag: str | None = None, **launch_flags: Any) -> int:
    config_path, overrides = pop_config_path(config, overrides, config_file)
    cwd, env = Path.cwd(), dict(os.environ)
    machine = detect_machine(env)  # what `train` sees (launcher.run.train), for its refusals below
    memory = gpu_memory(gpu_memory_flag, machine.details)
    topology = planned_topology(launch_flags, env, machine.gpus)
    result = validate(config_path, overrides, check_data=check_data, cwd=cwd, launching=True)
    if not result.ok:
        if format == "json":
            render_json(result.diagnostics, sys.stdout)
        else:
            render_text(result.diagnostics, sys.stdout, checked=config_path)
        print(f"dpo-launch plan: {config_path} has errors; fix them first (dpo-launch validate shows the same)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    plan = build_plan(result, topology, cwd, env, check_data=check_data, gpu_memory=memory)
    assert result.config is not None  # ok
    refusals = train_refusals(result.config, plan, machine, topology, cwd, env)
    plan["train"] = {"command": train_command(config_path, overrides, launch_flags, gpu_memory_flag),
                     "refusals": [asdict(d) for d in refusals]}
    if format == "json":
        json.dump(plan, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        render_plan(plan, sys.stdout)
    return EXIT_OK
