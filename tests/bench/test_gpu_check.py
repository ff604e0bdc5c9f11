"""bench/gpu/check.sh end to end in its CPU smoke mode: the same flow as on the GPU box (probe, model, plans,
dpo-launch LoRA, full and ZeRO-2 trainings, llamafactory-cli for the tokens/s ratio) on the tiny model in fp32,
without wheels; the table's rows, the passed loss self-tests, the reward tags and the logs archive are checked.
Also what check.sh refuses before it installs or runs anything."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

from support.cli import REPO
from support.training import training_env

SCRIPT = REPO / "bench" / "gpu" / "check.sh"
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # the smoke run is the same on a GPU machine
ROWS = [
    ("stack imports", "ok"),
    ("device", "ok"),
    ("carried wheels", "skipped"),
    ("distributed, 1 rank", "ok"),
    ("model", "ok"),
    ("train lora (dpo-launch)", "ok"),
    ("train full (dpo-launch)", "ok"),
    ("train full, DeepSpeed ZeRO-2 (dpo-launch)", "ok"),
    ("tokens/s dpo-launch vs llamafactory-cli (lora)", "measured"),
    ("--precompute-ref: with vs without (full)", "measured"),
    ("sdpa vs fa2 (lora, dpo-launch)", "skipped"),
    ("memory lora: plan vs peak", "skipped"),
    ("memory full: plan vs peak", "skipped"),
    ("memory full ZeRO-2: plan vs peak", "skipped"),
]


def run_check(*args: str, timeout: float = 1800, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=training_env(PYTHON=sys.executable, **NO_GPU, **env))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """One CPU smoke run into a folder whose path has a space; its results.json, table.md and stdout."""
    out = tmp_path_factory.mktemp("gpu check") / "out dir"
    result = run_check("--cpu-smoke", "--out", str(out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return {"out": out, "stdout": result.stdout, "table": (out / "table.md").read_text(encoding="utf-8"),
            "results": json.loads((out / "results.json").read_text(encoding="utf-8"))}


def row(smoke: dict, check: str) -> dict:
    return next(r for r in smoke["results"]["rows"] if r["check"] == check)


@pytest.mark.slow
def test_the_cpu_smoke_table_has_every_row_in_order_with_its_status(smoke):
    assert [(r["check"], r["status"]) for r in smoke["results"]["rows"]] == ROWS
    assert smoke["table"].startswith("# dpo-launch GPU check: CPU smoke run (not a measurement), 3 steps per run, ")
    assert f"| {ROWS[-1][0]} | skipped |" in smoke["table"]


@pytest.mark.slow
def test_the_table_printed_is_the_table_written(smoke):
    assert smoke["stdout"] == smoke["table"] + "\n" + f"table, results and logs: {smoke['out']}\n"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["lora", "full", "full-precompute", "full-zero2"])
def test_each_dpo_launch_training_passes_its_loss_self_test_and_writes_every_reward_tag(smoke, case):
    run = smoke["results"]["runs"][case]
    assert run["self_test"]["self_test"] == "passed"
    assert run["self_test"]["expected"] == pytest.approx(0.693147, abs=1e-6)  # ln 2: sigmoid at step 0
    assert run["reward_points"] == {f"train/rewards/{name}": 3 for name in
                                    ("chosen", "rejected", "accuracies", "margins")}


@pytest.mark.slow
def test_both_tools_train_the_same_tokens_for_the_throughput_ratio(smoke):
    runs = smoke["results"]["runs"]
    assert runs["lora"]["tokens"] == runs["lora-llamafactory-cli"]["tokens"] > 0
    ratio = runs["lora"]["tokens_per_second"] / runs["lora-llamafactory-cli"]["tokens_per_second"]
    assert f"= {ratio:.3f}x (goal >= 1.0x)" in row(smoke, "tokens/s dpo-launch vs llamafactory-cli (lora)")["detail"]


@pytest.mark.slow
def test_rows_that_need_a_gpu_say_why(smoke):
    assert row(smoke, "sdpa vs fa2 (lora, dpo-launch)")["detail"] == "--cpu-smoke: flash-attn needs a CUDA GPU"
    assert row(smoke, "carried wheels")["detail"] == "--cpu-smoke: this Python's own packages, no wheels installed"


@pytest.mark.slow
def test_the_precompute_row_compares_the_full_run_with_and_without_the_cache(smoke):
    runs = smoke["results"]["runs"]
    cached, without = runs["full-precompute"], runs["full"]
    assert cached["tokens"] == without["tokens"] > 0  # the same training, with the reference read from the cache
    ratio = cached["tokens_per_second"] / without["tokens_per_second"]
    detail = row(smoke, "--precompute-ref: with vs without (full)")["detail"]
    assert detail.startswith(f"{cached['tokens_per_second']:,.0f} vs {without['tokens_per_second']:,.0f} tokens/s = "
                             f"{ratio:.3f}x (goal >= 1.25x); wall ")
    assert detail.endswith("; CPU smoke: not a measurement")
    with tarfile.open(smoke["out"] / "logs.tar.gz") as archive:
        text = archive.extractfile("logs/full-precompute.log").read().decode()
    assert "reference log-probs" in text and "computing them" in text


@pytest.mark.slow
def test_memory_rows_give_the_plans_estimate_for_each_config(smoke):
    plans = smoke["results"]["plans"]
    assert row(smoke, "memory full ZeRO-2: plan vs peak")["detail"] == (
        f"plan {plans['full-zero2']['total_gib']:.2f} GiB (ZeRO-2); no CUDA device, so no peak to compare (CPU smoke)")
    assert plans["full"]["total_gib"] > plans["lora"]["total_gib"] > 0  # full adds gradients and Adam states
    assert plans["lora"]["parameters"] == 147776  # the tiny model


@pytest.mark.slow
def test_the_logs_archive_holds_each_runs_log_trainer_log_and_runtime_report(smoke):
    with tarfile.open(smoke["out"] / "logs.tar.gz") as archive:
        names = set(archive.getnames())
    for case in ("lora", "full", "full-precompute", "full-zero2", "lora-llamafactory-cli"):
        assert {f"logs/{case}.log", f"runs/{case}/trainer_log.jsonl", f"{case}.yaml"} <= names
    assert {"runs/lora/dpo-launch/runtime.json", "logs/probe.json", "logs/plan-full.json"} <= names
    assert sorted(path.name for path in smoke["out"].iterdir()) == ["logs.tar.gz", "results.json", "table.md"]


@pytest.mark.subprocess
def test_an_out_folder_that_holds_files_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "old.txt").write_text("earlier results\n")
    result = run_check("--cpu-smoke", "--out", str(tmp_path), timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"check: error: --out {tmp_path}: already holds files; remove them or pass another --out\n"
    assert (tmp_path / "old.txt").read_text() == "earlier results\n"


@pytest.mark.subprocess
def test_the_gpu_path_without_prepared_wheels_says_how_to_get_them(tmp_path):
    empty = tmp_path / "no wheels"
    empty.mkdir()
    result = run_check("--out", str(tmp_path / "out"), timeout=120, WHEELS=str(empty))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"check: error: {empty}: no wheels; run bash bench/gpu/prepare.sh on a machine with "
                             "PyPI first and bring the folder along\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_500m_shape_of_the_small_model_has_half_a_billion_parameters():
    import torch
    import transformers

    sys.path.insert(0, str(REPO / "scripts"))
    from small_model import model_config
    from tiny_model import train_tokenizer

    config = model_config(train_tokenizer(), "llama", layers=16, size="500m")
    with torch.device("meta"):  # shapes only, no memory
        parameters = transformers.LlamaForCausalLM(config).num_parameters()
    assert parameters == 501_007_872
