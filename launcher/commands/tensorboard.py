"""`dpo-launch tensorboard RUN_DIR [--port N]`: serve the run's event files with TensorBoard on 127.0.0.1.

Starts TensorBoard as a child process, waits until it answers with this run's logs, prints the URL; SIGINT
(Ctrl-C), SIGTERM or SIGHUP stops it (exit 130, 143, 129). Exit 1 when it cannot start.
"""

from __future__ import annotations

from launcher.observe.tensorboard import DEFAULT_PORT, serve


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tensorboard", help="serve a run's TensorBoard logs on 127.0.0.1",
                                   description=__doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the config's output_dir)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on; 0 for any free port (default: the first free port from "
                             f"{DEFAULT_PORT})")
    parser.set_defaults(handler=run)


def run(run_dir: str, port: int | None = None) -> int:
    return serve(run_dir, port)
