"""The OpenAI-compatible judge against a real local server: `llamafactory-cli api` serving the tiny model. Its
verdicts are noise, which is the point: every answer must be counted as unparseable, none guessed, and the key
the server demands must pass without being written anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest
from test_judges import write_candidates

from support.cli import run_main, unused_port
from support.training import training_env

KEY = "sk-live-test-42"


@pytest.fixture
def api_server(tmp_path, tiny_model_dir):
    port = unused_port()
    config = tmp_path / "api.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\ntemplate: default\ninfer_backend: huggingface\n")
    env = training_env(API_HOST="127.0.0.1", API_PORT=str(port), API_KEY=KEY, MAX_CONCURRENT="2")
    log = open(tmp_path / "api.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "llamafactory.cli", "api", str(config)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            request = urllib.request.Request(url + "/models", headers={"Authorization": f"Bearer {KEY}"})
            with urllib.request.urlopen(request, timeout=5):
                break
        except OSError:
            time.sleep(0.5)
    try:
        assert server.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_noise_from_a_real_server_is_counted_unparseable_and_no_pair_is_made(tmp_path, api_server):
    env = {**training_env(), "OPENAI_API_KEY": KEY}
    result = run_main("pairs", write_candidates(tmp_path), "--judge", f"openai:{api_server}", "--judge-model",
                      "tiny", "--judge-concurrency", "2", "--judge-max-tokens", "6", "--out", "pairs.jsonl",
                      cwd=tmp_path, env=env)
    assert result.returncode == 1
    audit = [json.loads(line) for line in (tmp_path / "pairs.audit.jsonl").read_text().splitlines()]
    verdicts = [v for record in audit for v in record["verdicts"]]
    assert len(verdicts) == 4 and {v["winner"] for v in verdicts} == {"invalid"}
    assert all(v["parsed"] == [None, None] and all(isinstance(a, str) and a for a in v["answers"]) for v in verdicts)
    assert result.stderr.splitlines() == [
        "audit: pairs.audit.jsonl",
        "judge requests: 8 (0 retried, 0 failed), 8 unparseable answers, at most 2 in flight",
        "dpo-launch pairs: error: no pairs: the judge preferred no candidate in any of the 2 prompts (2 no "
        "preference (equal scores, ties or invalid verdicts)); see pairs.audit.jsonl"]
    assert not (tmp_path / "pairs.jsonl").exists()
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.name != "api.log")
    assert KEY not in written + result.stdout + result.stderr
