"""A TensorBoard server for a run's event files, bound to 127.0.0.1 (`dpo-launch tensorboard RUN_DIR`).

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

from launcher.errors import EXIT_INTERRUPTED, UserError
from launcher.observe.run_state import find_logdir

DEFAULT_PORT = 6006
HOST = "127.0.0.1"
START_TIMEOUT = 120.0  # TensorBoard imports a lot; on a busy 2-core machine it can take tens of seconds


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


def serve(run_dir: str, port: int | None = None) -> int:
    """Serve until Ctrl-C / SIGTERM; the exit code. UserError when the run or TensorBoard is missing."""
    logdir = find_logdir(run_dir)
    if importlib.util.find_spec("tensorboard") is None:
        raise UserError("the tensorboard package is not installed in this environment "
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
        raise UserError(f"TensorBoard did not start on {HOST}:{port}" + (": " + " | ".join(detail) if detail else
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
