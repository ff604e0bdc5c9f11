"""The benchmarks run end to end. bench/gpu_throughput.py: its CPU smoke mode trains through both tools and
reports their throughput, and without a GPU it refuses with a clear message. bench/stats_speed.py: on a small
file it times both sides and reports the median of our runs. Speed figures are not asserted (speed goes to
bench/, not to tests); the shape of the report and the equal work done by both tools are."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys

import pytest

from support.cli import REPO
from support.training import training_env

SCRIPT = REPO / "bench" / "gpu_throughput.py"
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # torch sees no GPU even on a GPU machine, so both tests run the same there
NEEDS_GPU = ("gpu_throughput: needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False); "
             "run it on a GPU machine, or pass --allow-cpu for a CPU smoke run\n")


def run_bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, cwd=REPO,
                          env=training_env(**NO_GPU), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """One CPU smoke run: 2 steps per tool, one repeat, the work kept in a temp dir."""
    work = tmp_path_factory.mktemp("gpu-throughput")
    result = run_bench("--allow-cpu", "--steps", "2", "--repeats", "1", "--work-dir", str(work))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.slow
def test_cpu_smoke_reports_tokens_per_second_of_both_tools_and_their_ratio(smoke):
    speeds = smoke["tokens_per_second"]
    assert set(speeds) == {"llamafactory-cli", "dpo-launch"}
    assert all(value > 0 for value in speeds.values())
    assert smoke["ratio"] == round(speeds["dpo-launch"] / speeds["llamafactory-cli"], 3)
    assert (smoke["mode"], smoke["precision"], smoke["steps"]) == ("cpu-smoke (not a measurement)", "fp32", 2)


@pytest.mark.slow
def test_both_tools_train_the_same_tokens_from_the_same_config(smoke):
    tokens = {tool: [run["tokens"] for run in runs] for tool, runs in smoke["runs"].items()}
    assert tokens["llamafactory-cli"] == tokens["dpo-launch"]
    assert tokens["dpo-launch"][0] > 0


@pytest.mark.slow
def test_cpu_smoke_reports_the_passed_first_batch_self_test_of_dpo_launch(smoke):
    verdict = smoke["self_test"]
    assert verdict["verdict"] == "passed"
    assert verdict["runs"][0]["expected"] == pytest.approx(0.693147, abs=1e-6)  # ln 2: sigmoid at step 0
    assert verdict["relative_tolerance"] == 1e-3  # fp32


@pytest.mark.subprocess
def test_without_a_gpu_and_without_allow_cpu_it_exits_2_saying_it_needs_one():
    result = run_bench("--steps", "2", timeout=300)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", NEEDS_GPU)


@pytest.mark.subprocess
def test_an_unknown_deepspeed_preset_is_refused_with_the_presets_listed():
    result = run_bench("--allow-cpu", "--deepspeed", "zero9", timeout=300)
    presets = ", ".join(sorted(p.stem for p in (REPO / "config" / "deepspeed").glob("*.json")))
    assert result.returncode == 2
    expected = f"gpu_throughput: error: --deepspeed: expected one of {presets} or a file, but got 'zero9'\n"
    assert result.stderr == expected


@pytest.mark.subprocess
def test_stats_speed_measures_both_sides_on_the_same_pairs_and_reports_the_median_of_our_runs():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "stats_speed.py"), "--records", "300", "--repeat",
                             "3"], check=False, cwd=REPO, env=training_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "LLaMA-Factory get_dataset:" in out and "(300 pairs; whole process" in out
    ours = re.search(r"dpo-launch validate --stats: +([\d.]+) s  "
                     r"\(median of 3 runs: ([\d.]+), ([\d.]+), ([\d.]+)\)", out)
    assert ours, out
    median, runs = float(ours[1]), [float(x) for x in ours.groups()[1:]]
    assert median == pytest.approx(statistics.median(runs), abs=0.051)  # printed to one decimal
    assert "300 pairs, tokenizer mode pieces, 2 processes" in out
    lf_seconds = float(re.search(r"LLaMA-Factory get_dataset: +([\d.]+) s", out)[1])
    ratio = float(re.search(r"ratio LF get_dataset / ours: +([\d.]+)x", out)[1])
    assert ratio == pytest.approx(lf_seconds / median, abs=0.051 + 0.1 * ratio)  # from rounded figures


@pytest.mark.subprocess
def test_record_checks_times_reading_and_checking_the_same_file_and_reports_their_ratio():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "record_checks.py"), "--records", "500", "--repeat",
                             "1", "--templated", "10"], check=False, cwd=REPO, env=training_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(report) == {"records", "templated_every", "read_s", "check_s", "ratio_check_to_read", "fast_us"}
    assert (report["records"], report["templated_every"]) == (500, 10)
    check, read, half = report["check_s"], report["read_s"], 0.0005  # both printed to 3 decimals
    assert read > half and report["fast_us"] > 0
    assert (check - half) / (read + half) - 0.001 <= report["ratio_check_to_read"] <= (check + half) / (read - half)
