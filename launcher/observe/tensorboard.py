"""A TensorBoard server for a run's event files, bound to 127.0.0.1 (`dpo-launch tensorboard RUN_DIR`).

Starts `python -m tensorboard.main` as a child process (no shell) in a process group of its own (TensorBoard
starts its data server as a grandchild), and prints the URL once the server is known to be ours and to serve
this run: the port is read from our child's own "TensorBoard <version> at <url>" line (printed once it has bound
the port, so a server of another run on a port we asked for can never pass for ours; `--port 0` works), and the
server at that URL must report this run's logdir (`data/logdir`). Without `--port`, TensorBoard itself takes
the first free port from 6006 as it binds.

SIGINT, SIGTERM and SIGHUP stop the server's whole process group, then this command (exit 130, 143, 129), also
when it was started with `&` from a script, where SIGINT is ignored and the child inherits that. Exit 1 when
the server cannot start or stops on its own.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from launcher.errors import UserError
from launcher.observe.run_state import find_logdir

DEFAULT_PORT = 6006  # TensorBoard's own default, where it starts looking for a free port
HOST = "127.0.0.1"
START_TIMEOUT = 120.0  # TensorBoard imports a lot; on a busy 2-core machine it can take tens of seconds
STOP_TIMEOUT = 10.0
POLL_SECONDS = 0.2  # how soon a stop signal is acted on once the server is up
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# tensorboard/program.py WerkzeugServer.print_serving_message, written to stderr after the port is bound
SERVING = re.compile(r"^TensorBoard \S+ at (http://\S+?/) \(Press CTRL\+C to quit\)")


def tensorboard_argv(logdir: Path, port: int | None) -> list[str]:
    """The server's command line; `--reload_multifile` because HF's final eval starts a second event file."""
    argv = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", HOST,
            "--reload_multifile", "true", "--reload_interval", "2"]
    return argv + ["--port", str(port)] if port is not None else argv


class Stopped(Exception):
    """A stop signal reached `dpo-launch tensorboard`."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopOnSignals:
    """While active, the first SIGINT/SIGTERM/SIGHUP is recorded; while `interrupting` it also raises Stopped in
    the main thread (to cut a slow start short). Later signals are noted only, so the server's shutdown is not cut
    short. Installed over an inherited SIG_IGN too.

    Once the server is up the main thread polls `received` instead of being interrupted: an exception raised
    inside `Popen.wait` can leave its internal lock held, and the shutdown's own wait would then block forever."""

    def __enter__(self) -> _StopOnSignals:
        self.received: int | None = None
        self.interrupting = True
        self.previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, _frame) -> None:
        if self.received is None:
            self.received = signum
            if self.interrupting:
                raise Stopped(signum)

    def wait_for_stop_or_exit(self, server: Server) -> int:
        """Block until a stop signal (raises Stopped) or the server's own exit (its code)."""
        self.interrupting = False
        while self.received is None:
            code = server.wait(timeout=POLL_SECONDS)
            if code is not None:
                return code
        raise Stopped(self.received)


class Server:
    """The TensorBoard child: its stderr read by a thread (the serving line, the last lines for errors)."""

    def __init__(self, logdir: Path, port: int | None):
        self.logdir, self.port = logdir, port
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self.serving = threading.Event()
        self.last_lines: collections.deque[str] = collections.deque(maxlen=5)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True, name="tensorboard-stderr")

    def start(self) -> None:
        self.process = subprocess.Popen(tensorboard_argv(self.logdir, self.port), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        errors="replace", start_new_session=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.last_lines.append(line.rstrip())
            match = SERVING.match(line)
            if match and self.url is None:
                self.url = match.group(1)
                self.serving.set()
        self.serving.set()  # the child has gone: stop waiting
        self.process.stderr.close()

    def wait_until_serving(self, timeout: float = START_TIMEOUT) -> str:
        """Our child's URL once it has bound its port and answers with this run's logdir; UserError otherwise."""
        self.serving.wait(timeout)
        if self.url is None:
            raise UserError(self._failure("did not start"))
        deadline = time.monotonic() + timeout
        while (logdir := served_logdir(self.url)) is None:
            if self.wait(timeout=0) is not None or time.monotonic() > deadline:
                raise UserError(self._failure(f"bound {self.url} but does not answer there"))
            time.sleep(0.5)
        if Path(logdir).resolve() != self.logdir.resolve():
            raise UserError(f"the TensorBoard answering at {self.url} serves {logdir}, not {self.logdir}")
        return self.url

    def _failure(self, what: str) -> str:
        detail = " | ".join(line for line in self.last_lines if line.strip())
        return (f"TensorBoard {what}" + (f": {detail}" if detail else "") +
                " (is the port in use? leave --port out to take a free one, or pick another)")

    def wait(self, timeout: float | None = None) -> int | None:
        """The server's exit code once it has ended; None if it is still running after `timeout` seconds."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM to the server's process group (TensorBoard and its data server), SIGKILL if it lingers."""
        if self.process is None:
            return
        for signum in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, signum)
            except (ProcessLookupError, PermissionError):
                break
            if self.wait(STOP_TIMEOUT) is not None:
                break
        self.process.wait()
        if self._reader.is_alive():
            self._reader.join(timeout=STOP_TIMEOUT)


def served_logdir(url: str) -> str | None:
    """The logdir the TensorBoard at `url` serves (its `data/logdir` endpoint), None while it does not answer."""
    try:
        with urllib.request.urlopen(url + "data/logdir", timeout=2) as response:
            return json.loads(response.read().decode("utf-8")).get("logdir")
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return None


def serve(run_dir: str, port: int | None = None) -> int:
    """Serve until SIGINT / SIGTERM / SIGHUP: 128 + the signal. UserError (exit 1) when the run or TensorBoard is
    missing, the server cannot start, or it stops on its own."""
    logdir = find_logdir(run_dir)
    if importlib.util.find_spec("tensorboard") is None:
        raise UserError("the tensorboard package is not installed in this environment "
                        "(pip install 'dpo-launch[train]' or pip install tensorboard)")
    server = Server(logdir, port)
    with _StopOnSignals() as stops:
        try:
            server.start()
            print(f"TensorBoard for {logdir} at {server.wait_until_serving()} (Ctrl-C to stop)", flush=True)
            code = stops.wait_for_stop_or_exit(server)
            raise UserError(f"TensorBoard stopped on its own (exit code {code})"
                            + (": " + " | ".join(server.last_lines) if server.last_lines else ""))
        except Stopped as stop:
            signum = stop.signum
        finally:
            server.stop()
    print(f"dpo-launch tensorboard: stopped by {signal.Signals(signum).name}", file=sys.stderr)
    return 128 + signum
