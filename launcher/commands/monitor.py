"""`dpo-launch monitor RUN_DIR`: follow a run's reward metrics and health alerts in the terminal."""

from __future__ import annotations

from launcher.observe.monitor import follow


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "monitor", help="follow a run's loss, rewards and alerts (live view on a terminal, log lines otherwise)",
        description=__doc__ + "\n\nReads <RUN_DIR>/tensorboard incrementally; works on any copy of the run directory.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the config's output_dir)")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between reads of the event files (default: 1)")
    parser.add_argument("--wait", action="store_true",
                        help="wait for the event files to appear instead of failing (a run that is starting)")
    parser.add_argument("--plain", action="store_true", help="log lines even on a terminal")
    parser.set_defaults(handler=run)


def run(run_dir: str, once: bool = False, interval: float = 1.0, wait: bool = False, plain: bool = False) -> int:
    return follow(run_dir, once=once, interval=max(0.1, interval), wait=wait, live=False if plain else None)
