"""`dpo-launch tensorboard RUN_DIR [--port N]`: serve the run's event files with TensorBoard on 127.0.0.1.

Starts `python -m tensorboard.main` as a child process (no shell), waits until it answers over HTTP,
prints the URL, and stops it on Ctrl-C or SIGTERM (forwarded as SIGINT, TensorBoard's own way out).
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 130
DEFAULT_PORT = 6006
HOST = "127.0.0.1"
START_TIMEOUT = 120.0  # TensorBoard imports a lot; on a busy 2-core machine it can take tens of seconds


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tensorboard", help="serve a run's TensorBoard logs on 127.0.0.1",
                                   description=__doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the config's output_dir)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (default: the first free port from {DEFAULT_PORT})")
    parser.set_defaults(handler=run)


def tensorboard_argv(logdir: Path, port: int) -> list[str]:
    """The server's command line; `--reload_multifile` because HF's final eval starts a second event file."""
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", HOST,
            "--port", str(port), "--reload_multifile", "true", "--reload_interval", "2"]


def free_port(start: int = DEFAULT_PORT, tries: int = 100) -> int:
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((HOST, port)) != 0:
                return port
    raise OSError(f"no free port in {start}-{start + tries - 1}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_up(process: subprocess.Popen, url: str, timeout: float = START_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if answers(url + "data/logdir"):
            return True
        time.sleep(0.5)
    return False


def run(run_dir: str, port: int | None = None) -> int:
    from launcher.monitor import RunDirError, find_logdir

    try:
        logdir = find_logdir(run_dir)
    except RunDirError as exc:
        return _error(str(exc))
    if importlib.util.find_spec("tensorboard") is None:
        return _error("the tensorboard package is not installed in this environment "
                      "(pip install 'dpo-launch[train]' or pip install tensorboard)")
    port = port if port is not None else free_port()
    process = subprocess.Popen(tensorboard_argv(logdir, port), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGINT))
    try:
        return _serve(process, logdir, port)
    except KeyboardInterrupt:
        _stop(process)
        print("dpo-launch tensorboard: stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(process)


def _serve(process: subprocess.Popen, logdir: Path, port: int) -> int:
    url = f"http://{HOST}:{port}/"
    if not wait_until_up(process, url):
        _stop(process)
        detail = (process.stderr.read() if process.stderr else "").strip().splitlines()[-3:]
        return _error(f"TensorBoard did not start on {HOST}:{port}" + (": " + " | ".join(detail) if detail else
                      "") + " (is the port in use? try --port)")
    print(f"TensorBoard for {logdir} at {url} (Ctrl-C to stop)", flush=True)
    # Drain stderr so the server never blocks on a full pipe; it ends when the server exits.
    for _ in process.stderr:
        pass
    code = process.wait()
    return EXIT_INTERRUPTED if code in (-signal.SIGINT, 130) else code


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _error(message: str) -> int:
    print(f"dpo-launch tensorboard: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR
