"""`dpo-launch` entry point: parse arguments, dispatch to one module per subcommand, map exit codes.

Exit codes (launcher.errors): 0 ok, 1 the user's input is wrong, 2 usage error, 3 internal error (crash log
written), 130 interrupted; `train` passes the job's own exit code through (4 stopped by an alert, 5 stalled,
129/143 after SIGHUP/SIGTERM). The exit code is the result's whatever happens to stdout (a closed pipe drops the
output, never the work), and with `--format json` every exit prints one JSON object (launcher.commands.output).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

from launcher import __version__
from launcher.commands.output import (
    HeldOutput,
    PipeSafeStream,
    error_object,
    print_json,
    wants_json,
)
from launcher.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    EXIT_USER_ERROR,
    UsageError,
    UserError,
)

# (command, its module, the one-line help its add_parser gives), in --help order. Each module exposes
# add_parser(subparsers) and run(**arguments) -> exit code, and is imported only when its command runs: importing
# all of them took a third of a second, which pre-commit paid once per changed config
# (tests/cli/test_lazy_commands.py checks that these help lines are the modules' own).
COMMANDS = (
    ("validate", "launcher.commands.validate", "check a config, its dataset_info.json and every record"),
    ("plan", "launcher.commands.plan", "show the reference model, loss, batch, memory and launch"),
    ("train", "launcher.commands.train", "validate, then launch LLaMA-Factory training on every rank"),
    ("monitor", "launcher.commands.monitor",
     "follow a run's loss, rewards and alerts (live view on a terminal, log lines otherwise)"),
    ("tensorboard", "launcher.commands.tensorboard", "serve a run's TensorBoard logs on 127.0.0.1"),
    ("report", "launcher.commands.report", "write PNG plots and report.md for a run"),
    ("convert", "launcher.commands.convert", "convert TRL/OpenAI/HH/UltraFeedback/alpaca pairs to LF's format"),
    ("schema", "launcher.commands.schema", "print the JSON Schema of a dataset's records"),
    ("generate", "launcher.commands.generate", "sample K responses per prompt with LLaMA-Factory's ChatModel"),
    ("pairs", "launcher.commands.pairs", "judge candidates into LLaMA-Factory preference pairs"),
    ("eval", "launcher.commands.evaluate", "held-out preference metrics, win rate, and a quality gate"),
    ("loop", "launcher.commands.loop", "iterative / online DPO: train, evaluate and gate round after round"),
)


class _ArgparseError(UsageError):
    """A usage error argparse found; the usage line and the message are already on stderr."""


class _Parser(argparse.ArgumentParser):
    """argparse, with abbreviations off (`--o` must not mean `--overwrite`) and the exit code of a usage error."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # argparse exits 2 as well; keep its message, add the help hint
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _ArgparseError(f"{self.prog}: error: {message}")


def build_parser(full: frozenset[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the full arguments of the commands in `full` (their modules imported; None: every
    command), and every other command by its name and one-line help only, which is all --help shows of it."""
    parser = _Parser(prog="dpo-launch", description="Validate, plan and launch LLaMA-Factory DPO/KTO training.")
    parser.add_argument("--version", action="version", version=f"dpo-launch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name, module, help_line in COMMANDS:
        if full is None or name in full:
            importlib.import_module(module).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_line)
    return parser


def chosen_command(argv: list[str]) -> frozenset[str]:
    """The command argv runs ({} when it names none: --help, --version, a typo), the first word that is not an
    option, as argparse reads it (dpo-launch's own options take no value)."""
    first = next((item for item in argv if not item.startswith("-")), None)
    return frozenset({first}) if first in {name for name, _, _ in COMMANDS} else frozenset()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    saved = sys.stdout, sys.stderr
    stdout, stderr = PipeSafeStream(sys.stdout), PipeSafeStream(sys.stderr)
    held = HeldOutput() if wants_json(argv) else None
    sys.stdout, sys.stderr = held or stdout, stderr
    try:
        code, error = _dispatch(argv)
    finally:
        sys.stdout, sys.stderr = saved
    if held is not None:  # exactly one JSON object: the command's, or the error's
        if error is None:
            stdout.write(held.getvalue())
        else:
            print_json(error, stdout)
    stdout.flush()
    stderr.flush()
    return code


def _dispatch(argv: list[str]) -> tuple[int, dict | None]:
    """(exit code, the JSON error object when the command ended in an error rather than with a result)."""
    command = None
    try:
        args = parse_arguments(build_parser(chosen_command(argv)), argv)
        command = args.command
        kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "handler")}
        return args.handler(**kwargs), None
    except _ArgparseError as exc:
        return EXIT_USAGE, error_object(EXIT_USAGE, str(exc))
    except UsageError as exc:
        print(f"dpo-launch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE, error_object(EXIT_USAGE, f"dpo-launch: error: {exc}")
    except UserError as exc:
        print(f"dpo-launch {command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR, error_object(EXIT_USER_ERROR, f"dpo-launch {command}: error: {exc}")
    except KeyboardInterrupt:
        print("dpo-launch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED, error_object(EXIT_INTERRUPTED, "dpo-launch: interrupted")
    except SystemExit as exc:  # argparse's --help and --version (text, as asked for), exit 0
        return (exc.code if isinstance(exc.code, int) else EXIT_USAGE), None
    except Exception:  # our bug: never a bare traceback, always a crash log to attach to a report
        return EXIT_INTERNAL, _internal_error(argv)


def _internal_error(argv: list[str]) -> dict:
    message = "dpo-launch: internal error (this is a bug in dpo-launch)"
    try:
        log = write_crash_log(argv)
    except OSError as exc:  # no writable temporary directory: the traceback goes to stderr instead
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"{message}; the crash log could not be written ({exc}), the traceback is above", file=sys.stderr)
        return error_object(EXIT_INTERNAL, message)
    print(f"{message}; details in {log}", file=sys.stderr)
    return error_object(EXIT_INTERNAL, message, crash_log=log)


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
    """A new file for each crash (the time, then a random part: two crashes in one second keep both)."""
    import tempfile  # imported here, as traceback: only a crash needs them, and at the top they cost every run ~7 ms
    import traceback

    fd, name = tempfile.mkstemp(prefix=f"dpo-launch-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"dpo-launch {__version__}\nargv: {argv!r}\n\n{traceback.format_exc()}")
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())
