"""`dpo-launch validate CONFIG [CONFIG ...] [key=value ...]`: every problem in the config, dataset_info.json and
records. Several configs (as pre-commit passes the changed files) are validated one after the other, each with
its own summary line; the exit code is 1 when any has an error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from launcher.check.data.scan import MAX_JOBS, default_jobs
from launcher.check.diagnostics import render_json, render_text
from launcher.check.invocation import config_file_flag_warning
from launcher.check.validation import validate
from launcher.commands.arguments import add_config_arguments, pop_config_path
from launcher.errors import EXIT_OK, EXIT_USER_ERROR, UsageError
from launcher.stats.render import render_stats_text
from launcher.stats.runner import WarmWorker, run_stats


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("validate", help="check a config, its dataset_info.json and every record",
                                   description=__doc__)
    add_config_arguments(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every diagnostic, not the first per file")
    parser.add_argument("--no-data", dest="check_data", action="store_false",
                        help="check the config only, not dataset_info.json and the records")
    parser.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                        help="processes to check the records of a large JSON Lines file in (default: the available "
                             f"cores, at most {MAX_JOBS}); the diagnostics are the same for any N")
    parser.add_argument("--stats", action="store_true",
                        help="also measure the data with the config's tokenizer and template: token lengths, "
                             "truncation by cutoff_len, length bias, identical/duplicate/contradicting pairs, KTO "
                             "balance (runs LLaMA-Factory's template code in a worker process)")
    parser.add_argument("--stats-dir", dest="stats_dir", metavar="DIR",
                        help="where --stats writes stats.json and the histograms (default: "
                             "<output_dir>/dpo-launch/stats)")
    parser.set_defaults(handler=run)


def run(config: str | None, overrides: list[str], config_file: str | None = None, format: str = "text",
        verbose: bool = False, check_data: bool = True, stats: bool = False, stats_dir: str | None = None,
        jobs: int | None = None) -> int:
    config_path, overrides = pop_config_path(config, overrides, config_file)
    configs, overrides = more_configs(config_path, overrides)
    jobs = default_jobs() if jobs is None else jobs
    if len(configs) > 1:
        if stats or stats_dir or format == "json":
            raise UsageError("several configs are validated in text only: --stats and --format json take one config")
        results = [_validate_one(path, overrides, verbose, check_data, jobs) for path in configs]
        return EXIT_OK if all(results) else EXIT_USER_ERROR
    if (stats or stats_dir) and not check_data:
        raise UsageError("--stats measures the records: it cannot be combined with --no-data")
    if stats_dir and not stats:
        raise UsageError("--stats-dir is only used with --stats")
    warm = _start_stats_worker() if stats else None  # its imports overlap with the validation below
    result = validate(config_path, overrides, check_data=check_data, jobs=jobs)
    if config_file is not None and result.config is not None:
        result.diagnostics.insert(0, config_file_flag_warning(config_path, overrides))
    measured = _measure(result, stats_dir, warm) if stats else None
    if format == "json":
        render_json(result.diagnostics, sys.stdout, extra_summary={"data": result.data_summary},
                    extra={"stats": measured} if stats else None)
    else:
        render_text(result.diagnostics, sys.stdout, verbose=verbose, checked=config_path)
        if measured:
            render_stats_text(measured, sys.stdout)
    return EXIT_OK if result.ok else EXIT_USER_ERROR


def more_configs(config_path: str, overrides: list[str]) -> tuple[list[str], list[str]]:
    """(configs, overrides): positionals without '=' after the first config are more configs, not overrides."""
    return [config_path] + [item for item in overrides if "=" not in item], [item for item in overrides if "=" in item]


def _validate_one(config_path: str, overrides: list[str], verbose: bool, check_data: bool, jobs: int) -> bool:
    result = validate(config_path, overrides, check_data=check_data, jobs=jobs)
    render_text(result.diagnostics, sys.stdout, verbose=verbose, checked=config_path)
    return result.ok


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, 1 or more, but got {text!r}")
    return value


def _start_stats_worker():
    return WarmWorker(Path.cwd())


def _measure(result, stats_dir: str | None, warm) -> dict | None:
    """`--stats`: run the stats worker; its diagnostics (a tokenizer that cannot load) join the others."""
    found, measured = run_stats(result, Path.cwd(), stats_dir, warm=warm)
    result.diagnostics.extend(found)
    return measured
