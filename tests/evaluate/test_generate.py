"""`dpo-launch generate`: ChatModel responses on the tiny model, resumable after Ctrl-C with the same samples,
data-parallel workers giving what one worker gives, and the files it refuses to touch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from support.cli import REPO, run_cli, run_main
from support.training import training_env

GEN = ("--template", "default", "--max-new-tokens", "8", "-n", "2", "--chunk-size", "2")


def prompts_file(tmp_path, count=8):
    path = tmp_path / "prompts.jsonl"
    lines = (REPO / "data" / "demo_dpo.jsonl").read_text().splitlines()[:count]
    path.write_text("\n".join(lines) + "\n")
    return path


def generate(model, prompts, out, *extra, cwd):
    return run_cli("generate", model, "--prompts", prompts, "--out", out, *GEN, *extra, cwd=cwd, env=training_env())


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_generate_writes_k_responses_per_prompt_and_the_settings(tmp_path, tiny_model_dir):
    prompts = prompts_file(tmp_path, 4)
    result = generate(tiny_model_dir, prompts, tmp_path / "out.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    got = records(tmp_path / "out.jsonl")
    assert [r["id"] for r in got] == ["0", "1", "2", "3"]
    assert [len(r["responses"]) for r in got] == [2] * 4 and all(t <= 8 for r in got for t in r["tokens"])
    assert got[0]["messages"] == [{"role": "user", "content": "What is 18+13?"}]
    meta = json.loads((tmp_path / "out.jsonl.meta.json").read_text())
    assert meta["identity"]["sampling"] == {"n": 2, "temperature": 0.95, "top_p": 0.7, "top_k": 50,
                                            "max_new_tokens": 8, "repetition_penalty": 1.0, "seed": 42}
    assert meta["identity"]["backend"] == "huggingface" and not (tmp_path / "out.jsonl.parts").exists()
    again = generate(tiny_model_dir, prompts, tmp_path / "out.jsonl", cwd=tmp_path)
    assert again.stdout == (f"{tmp_path / 'out.jsonl'} is already complete with these settings (4 prompts); "
                            "nothing to do\n")


@pytest.mark.slow
def test_an_interrupted_generation_resumes_to_what_an_uninterrupted_one_gives(tmp_path, tiny_model_dir):
    prompts = prompts_file(tmp_path, 48)
    whole = generate(tiny_model_dir, prompts, tmp_path / "whole.jsonl", "--max-new-tokens", "24", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    argv = [sys.executable, "-m", "launcher", "generate", str(tiny_model_dir), "--prompts", str(prompts), "--out",
            str(tmp_path / "cut.jsonl"), *GEN, "--max-new-tokens", "24"]
    process = subprocess.Popen(argv, cwd=tmp_path, env=training_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "cut.jsonl.parts"
    deadline = time.monotonic() + 300
    while not list(parts.glob("chunk-*.jsonl")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    done = sum(len(p.read_text().splitlines()) for p in parts.glob("chunk-*.jsonl"))
    assert 0 < done < 48, "interrupted mid-way, whole chunks kept"
    resumed = generate(tiny_model_dir, prompts, tmp_path / "cut.jsonl", "--max-new-tokens", "24", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "cut.jsonl.meta.json").read_text())["generated"] == 48 - done
    assert records(tmp_path / "cut.jsonl") == records(tmp_path / "whole.jsonl")


@pytest.mark.slow
def test_two_data_parallel_workers_give_what_one_worker_gives(tmp_path, tiny_model_dir):
    prompts = prompts_file(tmp_path, 8)
    one = generate(tiny_model_dir, prompts, tmp_path / "one.jsonl", cwd=tmp_path)
    two = generate(tiny_model_dir, prompts, tmp_path / "two.jsonl", "--data-parallel", "2", cwd=tmp_path)
    assert one.returncode == two.returncode == 0, two.stderr[-3000:]
    assert json.loads((tmp_path / "two.jsonl.meta.json").read_text())["data_parallel"] == 2
    assert records(tmp_path / "two.jsonl") == records(tmp_path / "one.jsonl")


@pytest.mark.subprocess
def test_a_model_that_does_not_load_is_a_user_error_from_the_worker(tmp_path):
    (tmp_path / "empty-model").mkdir()
    result = generate(tmp_path / "empty-model", prompts_file(tmp_path, 2), tmp_path / "o.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"dpo-launch generate: error: cannot load the model '{tmp_path / 'empty-model'}': ")


@pytest.mark.subprocess
def test_a_killed_launcher_leaves_no_worker_behind(tmp_path, tiny_model_dir):
    prompts = prompts_file(tmp_path, 64)
    argv = [sys.executable, "-m", "launcher", "generate", str(tiny_model_dir), "--prompts", str(prompts), "--out",
            str(tmp_path / "o.jsonl"), *GEN, "--max-new-tokens", "200"]
    process = subprocess.Popen(argv, cwd=tmp_path, env=training_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    request = tmp_path / "o.jsonl.parts" / "worker-0" / "request.json"
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while not workers and time.monotonic() < deadline:
        workers = [int(p.name) for p in os.scandir("/proc") if p.name.isdigit() and _runs(p.name, str(request))]
        time.sleep(0.1)
    assert workers, "the worker started"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


def _runs(pid: str, needle: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return needle.encode() in handle.read()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def test_an_output_that_dpo_launch_did_not_write_is_never_replaced_without_force(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "mine.jsonl").write_text("my notes\n")
    result = run_main("generate", "model", "--prompts", prompts_file(tmp_path, 2), "--out", "mine.jsonl",
                      "--template", "default", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"dpo-launch generate: 2 prompts x 1 from {tmp_path / 'model'} (template default)\n"
        f"dpo-launch generate: error: {tmp_path / 'mine.jsonl'} exists and is not a dpo-launch output; pass --force "
        "to replace it, or choose another --out\n")
    assert (tmp_path / "mine.jsonl").read_text() == "my notes\n"


def test_several_responses_need_sampling(tmp_path):
    result = run_main("generate", "m", "--prompts", "p.jsonl", "-n", "4", "--temperature", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("dpo-launch: error: -n above 1 needs sampling (--temperature above 0): LLaMA-Factory "
                             "samples whenever it returns several sequences, so greedy decoding cannot give K "
                             "different responses\n")
