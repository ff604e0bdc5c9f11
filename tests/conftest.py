"""Shared test fixtures: run the CLI as a user would, in a subprocess, from a given directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases"


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


@pytest.fixture
def cli():
    return run_cli


from fixtures_training import *  # noqa: E402,F401,F403  (tiny model and workspace fixtures)
