"""`dpo-launch loop LOOP.yaml [launch flags]`: iterative and online DPO rounds, each a run directory, each
round starting from (and referenced against) the previous round's model, evaluated and gated before the next;
resumable (a rerun continues at the first unfinished step); exit 6 at the first failed gate. The format of
LOOP.yaml is in the README ("Evaluate, gate and iterate")."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from launcher.check.diagnostics import render_text
from launcher.commands.arguments import add_launch_arguments
from launcher.errors import EXIT_USER_ERROR
from launcher.evaluate.loop import run_loop
from launcher.evaluate.loop_spec import LoopSpecError, read_loop


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("loop", help="iterative / online DPO: train, evaluate and gate round after round",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loop_file", metavar="LOOP.yaml")
    add_launch_arguments(parser)
    parser.set_defaults(handler=run)


def run(loop_file: str, **launch_flags: Any) -> int:
    try:
        spec = read_loop(loop_file)
    except LoopSpecError as exc:
        render_text(exc.diagnostics, sys.stdout, checked=loop_file)
        print(f"dpo-launch loop: {loop_file} has errors; nothing was started", file=sys.stderr)
        return EXIT_USER_ERROR
    return run_loop(spec, launch_flags, Path.cwd(), dict(os.environ))
