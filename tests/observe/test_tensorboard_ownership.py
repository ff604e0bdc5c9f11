"""`dpo-launch tensorboard` prints a URL only for a server that is its own child and serves the run it was given,
supports `--port 0`, stops itself and its whole process group on SIGINT, SIGTERM and SIGHUP (also when started
with `&` from a script, where SIGINT arrives ignored), and exits only with documented codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from support.cli import REPO, cli_env
from support.events import write_run

URL_LINE = re.compile(r"^TensorBoard for (.+) at (http://127\.0\.0\.1:(\d+)/) \(Ctrl-C to stop\)\n$")


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def kill_descendants(pid: int) -> None:
    for child in descendants(pid):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def no_server_left_behind(tmp_path):
    """Whatever a failing test leaves running under its own tmp_path is killed (by pid) after it."""
    yield
    for pid in processes_mentioning(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def served_logdir(url: str) -> str:
    with urllib.request.urlopen(url + "data/logdir", timeout=30) as response:
        return json.loads(response.read().decode())["logdir"]


def start(run: Path, *flags: str, script: bool = False) -> subprocess.Popen:
    """`dpo-launch tensorboard RUN FLAGS`, or the same started with `&` by a non-interactive bash script (which
    starts it with SIGINT ignored); stdout and stderr piped."""
    argv = [sys.executable, "-m", "launcher", "tensorboard", str(run), *flags]
    if script:  # bash execs the last simple command; `& wait` keeps it a background job of the script
        argv = ["bash", "-c", '"$@" & echo "pid $!" >&2; wait $!', "bash", *argv]
    return subprocess.Popen(argv, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def stop_and_collect(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_descendants(proc.pid)  # the launcher under a bash script keeps the pipes open
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running {timeout} s after the signal; stderr: {err}") from None
    return proc.returncode, out, err


@pytest.mark.subprocess
def test_port_0_prints_the_real_port_of_a_server_that_serves_this_run(tmp_path):
    run = write_run(tmp_path / "run a", 3)
    with start(run, "--port", "0") as proc:
        line = proc.stdout.readline()
        match = URL_LINE.match(line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        assert (match.group(1), int(match.group(3)) > 0) == (str(run / "tensorboard"), True)
        assert Path(served_logdir(match.group(2))) == run / "tensorboard"
        proc.send_signal(signal.SIGTERM)
        code, _, err = stop_and_collect(proc)
    assert (code, err) == (143, "dpo-launch tensorboard: stopped by SIGTERM\n")
    assert processes_mentioning(str(run / "tensorboard")) == []  # TensorBoard and its data server are gone


@pytest.mark.subprocess
def test_a_port_taken_by_another_runs_server_is_refused_not_reported_as_ours(tmp_path):
    first_run, second_run = write_run(tmp_path / "first", 3), write_run(tmp_path / "second", 3)
    with start(first_run, "--port", "0") as first:
        try:
            match = URL_LINE.match(first.stdout.readline())
            assert match
            port = match.group(3)
            with start(second_run, "--port", port) as second:
                code, out, err = stop_and_collect(second, timeout=180)
            assert (code, out) == (1, "")  # never "TensorBoard for .../second/... at <the first run's URL>"
            assert err.startswith("dpo-launch tensorboard: error: TensorBoard did not start: ")
            assert f"could not bind to port {port}, it was already in use" in err
            assert err.endswith("(is the port in use? leave --port out to take a free one, or pick another)\n")
            assert Path(served_logdir(match.group(2))) == first_run / "tensorboard"  # the first one is untouched
        finally:
            first.send_signal(signal.SIGINT)
            assert stop_and_collect(first)[0] == 130


@pytest.mark.subprocess
def test_a_background_job_of_a_bash_script_starts_with_sigint_ignored():
    """The premise of the next test: bash starts `cmd &` of a non-interactive script with SIGINT ignored."""
    status = subprocess.run(["bash", "-c", "grep SigIgn /proc/self/status & wait"], capture_output=True,
                            text=True, check=True).stdout
    assert int(status.split()[1], 16) & (1 << (signal.SIGINT - 1))


@pytest.mark.subprocess
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_started_with_ampersand_from_a_script_it_stops_on_each_stop_signal(tmp_path, signum):
    run = write_run(tmp_path / "run", 3)
    with start(run, "--port", "0", script=True) as proc:
        try:
            pid = int(proc.stderr.readline().split()[1])
            assert URL_LINE.match(proc.stdout.readline())
            os.kill(pid, signum)
            code, _, err = stop_and_collect(proc)
        finally:  # a failed assertion must not leave Popen.__exit__ waiting on bash, which waits on the launcher
            kill_descendants(proc.pid)
    assert code == 128 + signum
    assert err.endswith(f"dpo-launch tensorboard: stopped by {signal.Signals(signum).name}\n")
    assert processes_mentioning(str(run / "tensorboard")) == []
