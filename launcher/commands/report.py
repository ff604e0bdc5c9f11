"""`dpo-launch report RUN_DIR`: plots and a markdown summary of a run, in <RUN_DIR>/dpo-launch/report/."""

from __future__ import annotations

import sys

EXIT_OK, EXIT_USER_ERROR = 0, 1


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write PNG plots and report.md for a run", description=__doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the config's output_dir)")
    parser.set_defaults(handler=run)


def run(run_dir: str) -> int:
    from launcher.monitor import RunDirError
    from launcher.report import build_report

    try:
        written = build_report(run_dir)
    except RunDirError as exc:
        print(f"dpo-launch report: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except PermissionError as exc:
        print(f"dpo-launch report: error: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"wrote {len(written)} files to {written[-1].parent}:")
    for path in written:
        print(f"  {path.name}")
    return EXIT_OK
