"""`dpo-launch train CONFIG [key=value ...] [launch flags]`: validate, guard the output_dir, record the run,
launch the worker on every rank and supervise it to the end.

The config stays a plain LLaMA-Factory config: everything launcher-specific is a flag here. The console shows
dpo-launch's lines, warnings and errors, the live view (a terminal) or one line per logged step, and a summary at
the end; everything the ranks print is in their logs (`--verbose` shows it all). `--stop-on` and
`--alert-threshold` reach every rank's health alerts through the environment.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from launcher.check.diagnostics import render_text
from launcher.check.validation import validate
from launcher.commands.arguments import (
    add_config_arguments,
    add_gpu_memory_argument,
    add_launch_arguments,
    pop_config_path,
    train_command,
)
from launcher.errors import EXIT_USER_ERROR, UsageError
from launcher.observe.alerts import settings_env
from launcher.run.ref_cache import cache_env
from launcher.run.stall import DEFAULT_STALL_SECONDS
from launcher.run.train import start_run

DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="validate, then launch LLaMA-Factory training on every rank",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    add_launch_arguments(parser)
    add_gpu_memory_argument(parser)
    parser.add_argument("--no-memory-check", dest="check_memory", action="store_false",
                        help="start even when the plan's memory estimate is more than the GPU memory")
    parser.add_argument("--dry-run", action="store_true", help="print the argv and environment, write nothing")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue from the last checkpoint-N in output_dir")
    existing.add_argument("--overwrite", action="store_true",
                          help="start over in an output_dir that holds a previous run (removes its checkpoint-* "
                               "and tensorboard/)")
    parser.add_argument("--allow-changes", action="store_true",
                        help="with --resume: continue although the config or the data changed since the last launch")
    parser.add_argument("--stall-timeout", metavar="DURATION", default=None,
                        help="stop the job when a rank makes no training progress for this long: seconds, or with a "
                             "unit (90s, 30m, 1h30m); 'off' never (default: 30m)")
    parser.add_argument("--no-monitor", dest="monitor", action="store_false",
                        help="one line per logged step instead of the live metrics view on a terminal")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show everything the ranks print (LLaMA-Factory's and transformers' INFO logs, progress "
                             "bars); without it only warnings, errors and dpo-launch's lines are shown, and the rest "
                             "is in <output_dir>/dpo-launch/logs/rank-N.log")
    parser.add_argument("--stop-on", dest="stop_on", metavar="NAMES",
                        help="comma-separated health alerts that end the run after saving a checkpoint "
                             "(default: loss-not-finite; 'none': no alert stops the run)")
    parser.add_argument("--alert-threshold", dest="alert_thresholds", action="append", default=[],
                        metavar="NAME=VALUE", help="change one alert threshold (repeatable), e.g. spike_factor=5")
    parser.add_argument("--precompute-ref", action="store_true",
                        help="compute the reference model's log-probs of every pair once, before training, into a "
                             "cache that later runs with the same reference, data and tokenization reuse (e.g. a "
                             "pref_beta sweep); training then builds no reference model")
    parser.add_argument("--precompute-ref-cache", metavar="DIR", default=None,
                        help="the cache folder for --precompute-ref (default: .dpo-launch-cache/ref-logps next to "
                             "the output_dir)")
    parser.set_defaults(handler=run)


def parse_duration(text: str | None) -> float | None:
    """Seconds for `--stall-timeout` ('90', '90s', '30m', '1h30m'); None for 'off'. UsageError otherwise."""
    if text is None:
        return DEFAULT_STALL_SECONDS
    if text.strip().lower() == "off":
        return None
    match = DURATION.match(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise UsageError(f"--stall-timeout: expected a duration such as 90, 90s, 30m or 1h30m (or 'off') but got "
                         f"{text!r}")
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise UsageError(f"--stall-timeout: must be longer than 0 but got {text!r} (use 'off' to turn the watch off)")
    return total


def run(config: str | None, overrides: list[str], config_file: str | None = None, dry_run: bool = False,
        resume: bool = False, overwrite: bool = False, monitor: bool = True, stop_on: str | None = None,
        alert_thresholds: list[str] | None = None, gpu_memory_flag: str | None = None, check_memory: bool = True,
        allow_changes: bool = False, stall_timeout: str | None = None, verbose: bool = False,
        precompute_ref: bool = False, precompute_ref_cache: str | None = None, **launch_flags: Any) -> int:
    config_path, overrides = pop_config_path(config, overrides, config_file)
    stall_seconds = parse_duration(stall_timeout)
    if allow_changes and not resume:
        raise UsageError("--allow-changes goes with --resume (it lets a resumed run use a changed config or data)")
    cwd, env = Path.cwd(), dict(os.environ)
    try:
        env.update(settings_env(stop_on, alert_thresholds or []))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = validate(config_path, overrides, cwd=cwd, launching=True)
    if result.diagnostics:
        render_text(result.diagnostics, sys.stdout, checked=config_path)
    if not result.ok:
        print(f"dpo-launch train: {config_path} has errors; nothing was started", file=sys.stderr)
        return EXIT_USER_ERROR
    env.update(cache_env(result.config.values, cwd, precompute_ref, precompute_ref_cache))
    consent = "resume" if resume else "overwrite" if overwrite else None
    return start_run(result, launch_flags, cwd, env, consent=consent, dry_run=dry_run, monitor=monitor,
                     gpu_memory_flag=gpu_memory_flag, check_memory=check_memory, stall_timeout=stall_seconds,
                     allow_changes=allow_changes, verbose=verbose,
                     resume_command=resume_argv(config_path, overrides, launch_flags, stop_on, alert_thresholds or [],
                                                stall_timeout, starts_over=bool(result.config.values.get(
                                                    "overwrite_output_dir")), gpu_memory_flag=gpu_memory_flag,
                                                check_memory=check_memory,
                                                precompute=(precompute_ref, precompute_ref_cache)))


def resume_argv(config_path: str, overrides: list[str], launch_flags: dict[str, Any], stop_on: str | None,
                alert_thresholds: list[str], stall_timeout: str | None, starts_over: bool = False,
                gpu_memory_flag: str | None = None, check_memory: bool = True,
                precompute: tuple[bool, str | None] = (False, None)) -> list[str]:
    """The command that resumes this run, for the end-of-run summary: the same config, overrides and flags (and
    `overwrite_output_dir=false` for a config that says to start over, which --resume refuses)."""
    argv = train_command(config_path, [*overrides, *(["overwrite_output_dir=false"] if starts_over else [])],
                         launch_flags, gpu_memory_flag)
    if not check_memory:
        argv.append("--no-memory-check")
    if stop_on is not None:
        argv += ["--stop-on", stop_on]
    for threshold in alert_thresholds:
        argv += ["--alert-threshold", threshold]
    if stall_timeout is not None:
        argv += ["--stall-timeout", stall_timeout]
    if precompute[0]:
        argv += ["--precompute-ref", *(["--precompute-ref-cache", precompute[1]] if precompute[1] else [])]
    return argv + ["--resume"]
