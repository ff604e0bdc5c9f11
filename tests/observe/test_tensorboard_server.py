"""`dpo-launch tensorboard RUN_DIR --port N`: a real TensorBoard server on 127.0.0.1 serving the run's tags."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from support.cli import REPO, cli_env, run_cli, unused_port
from support.training import REWARD_TAGS, live_run


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read().decode("utf-8"))


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_server_serves_the_reward_tags_and_stops_on_ctrl_c(tmp_path_factory, tiny_model_dir):
    run = live_run(tmp_path_factory, tiny_model_dir)
    assert run.returncode == 0, run.output[-3000:]
    port = unused_port()
    with subprocess.Popen([sys.executable, "-m", "launcher", "tensorboard", str(run.out), "--port", str(port)],
                          cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as server:
        try:
            first_line = server.stdout.readline()  # printed once the server answers
            url = f"http://127.0.0.1:{port}/"
            assert first_line == f"TensorBoard for {run.out / 'tensorboard'} at {url} (Ctrl-C to stop)\n", \
                server.stderr.read() if server.poll() is not None else first_line
            tags = get_json(url + "data/plugin/scalars/tags")
            assert set(REWARD_TAGS) <= set(tags["."])
            assert "progress/max_steps" in tags["dpo-launch"]
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=60) == 130
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert not answers(url + "data/logdir")  # the TensorBoard child is gone too


@pytest.mark.subprocess
def test_a_run_dir_without_event_files_is_refused_before_starting_a_server(tmp_path):
    (tmp_path / "run").mkdir()
    result = run_cli("tensorboard", tmp_path / "run", "--port", str(unused_port()))
    assert result.returncode == 1
    assert result.stderr.startswith(f"dpo-launch tensorboard: error: {tmp_path / 'run'}: no TensorBoard directory")
