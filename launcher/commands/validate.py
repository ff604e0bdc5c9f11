"""`dpo-launch validate CONFIG [key=value ...]`: every problem in the config, dataset_info.json and records."""

from __future__ import annotations

import sys

from launcher.commands.common import add_config_arguments, pop_config_path
from launcher.diagnostics import render_json, render_text

EXIT_OK, EXIT_INVALID = 0, 1


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("validate", help="check a config, its dataset_info.json and every record",
                                   description=__doc__)
    add_config_arguments(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every diagnostic, not the first per file")
    parser.add_argument("--no-data", dest="check_data", action="store_false",
                        help="check the config only, not dataset_info.json and the records")
    parser.set_defaults(handler=run)


def run(config: str | None, overrides: list[str], config_file: str | None = None, format: str = "text",
        verbose: bool = False, check_data: bool = True) -> int:
    from launcher.validation import validate

    config_path, overrides = pop_config_path(config, overrides, config_file)
    result = validate(config_path, overrides, check_data=check_data)
    if format == "json":
        render_json(result.diagnostics, sys.stdout, extra_summary={"data": result.data_summary})
    else:
        render_text(result.diagnostics, sys.stdout, verbose=verbose, checked=config_path)
    return EXIT_OK if result.ok else EXIT_INVALID
