"""`dpo-launch` entry point: parse arguments, dispatch to one module per subcommand, map exit codes.

Exit codes (launcher.errors): 0 ok, 1 the user's input is wrong, 2 usage error, 3 internal error (crash log
written), 130 interrupted. `train` passes the job's own exit code through.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

from launcher import __version__
from launcher.commands import (
    convert,
    evaluate,
    generate,
    loop,
    monitor,
    pairs,
    plan,
    report,
    tensorboard,
    train,
    validate,
)
from launcher.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_USER_ERROR,
    UsageError,
    UserError,
)

# Each exposes add_parser(subparsers) and run(**arguments) -> exit code; the order is the --help order.
COMMANDS = (validate, plan, train, monitor, tensorboard, report, convert, generate, pairs, evaluate, loop)


class _Parser(argparse.ArgumentParser):
    """argparse, with abbreviations off (`--o` must not mean `--overwrite`) and the exit code of a usage error."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # argparse exits 2 as well; keep its message, add the help hint
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dpo-launch", description="Validate, plan and launch LLaMA-Factory DPO/KTO training.")
    parser.add_argument("--version", action="version", version=f"dpo-launch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = None
    try:
        args = parse_arguments(build_parser(), argv)
        command = args.command
        kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "handler")}
        return args.handler(**kwargs)
    except UsageError as exc:
        print(f"dpo-launch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"dpo-launch {command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("dpo-launch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except SystemExit as exc:  # argparse's --help / usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except Exception:  # our bug: never a bare traceback, always a crash log to attach to a report
        log = write_crash_log(argv)
        print(f"dpo-launch: internal error (this is a bug in dpo-launch); details in {log}", file=sys.stderr)
        return EXIT_INTERNAL


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, but `key=value` overrides may also follow the flags (`validate c.yaml --verbose a=1`)."""
    args, extras = parser.parse_known_args(argv)
    overrides = [item for item in extras if "=" in item and not item.startswith("-")]
    unknown = [item for item in extras if item not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        args.overrides = list(args.overrides or []) + overrides
    return args


def write_crash_log(argv: list[str]) -> Path:
    log = Path(tempfile.gettempdir()) / f"dpo-launch-crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log.write_text(f"dpo-launch {__version__}\nargv: {argv!r}\n\n{traceback.format_exc()}", encoding="utf-8")
    return log


if __name__ == "__main__":
    sys.exit(main())
