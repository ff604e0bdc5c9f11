"""`dpo-launch report RUN_DIR`: plots and a markdown summary of a run, in <RUN_DIR>/dpo-launch/report/."""

from __future__ import annotations

import sys

from launcher.errors import EXIT_OK, UserError
from launcher.observe.report import build_report


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write PNG plots and report.md for a run", description=__doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the config's output_dir)")
    parser.set_defaults(handler=run)


def run(run_dir: str) -> int:
    try:
        written, skipped = build_report(run_dir)
    except PermissionError as exc:
        raise UserError(f"cannot write the report: {exc}") from None
    for problem in skipped:
        print(f"dpo-launch report: {problem}", file=sys.stderr)
    print(f"wrote {len(written)} files to {written[-1].parent}:")
    for path in written:
        print(f"  {path.name}")
    return EXIT_OK
