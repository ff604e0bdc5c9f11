"""Run `dpo-launch` as a user would: in this process through `main(argv)` (fast, for behaviour), or as a real
subprocess (for what only a process shows: exit on a signal, imports, streams)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "cases"
HEAVY = ("torch", "transformers", "deepspeed", "trl", "peft", "tensorboard", "llamafactory", "accelerate",
         "datasets")


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | str | None = None, timeout: float = 600, env: dict | None = None,
            **popen: object) -> subprocess.CompletedProcess:
    """`dpo-launch ARGS` as a separate process; returns the completed process with text output."""
    return subprocess.run([sys.executable, "-m", "launcher", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout, env=env or cli_env(), **popen)


def run_main(*args: object, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
             **_ignored: object) -> subprocess.CompletedProcess:
    """`dpo-launch ARGS` in this process: `main(argv)` from `cwd` with `env` as the environment, stdout and
    stderr captured; the same result shape as `run_cli`. Only for commands that start no process of their own."""
    from launcher.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or REPO), _environment(env), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return subprocess.CompletedProcess(["dpo-launch", *map(str, args)], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# Runs the real CLI entry point in a fresh interpreter, then lists the heavy modules it left in sys.modules.
PROBE = """
import json, runpy, sys
heavy = {heavy!r}
sys.argv = ["dpo-launch", *{args!r}]
try:
    runpy.run_module("launcher", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
with open({report!r}, "w") as f:
    json.dump({{"exit": code, "heavy": loaded}}, f)
"""


def probe(args: list[str], cwd, report, heavy=HEAVY) -> dict:
    """{"exit": code, "heavy": [heavy modules imported]} for `dpo-launch ARGS` in a fresh process."""
    code = PROBE.format(heavy=set(heavy), args=args, report=str(report))
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=cli_env(), capture_output=True, text=True,
                   timeout=300, check=False)
    return json.loads(Path(report).read_text())


def unused_port() -> int:
    """A TCP port for a process the test starts (a server, torchrun's rendezvous). Picked at random below the
    kernel's ephemeral range (32768 and up on Linux), where the outgoing connections of everything else running
    take their ports: a port the OS hands out for bind(0) may be handed to another process before ours binds it."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no unused port in 20000-31999")
