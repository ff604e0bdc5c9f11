"""Arguments shared by the subcommands that read a config (validate, plan, train)."""

from __future__ import annotations

import argparse

from launcher.cli import UsageError


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
