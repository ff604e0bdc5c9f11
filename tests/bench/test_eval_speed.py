"""bench/eval_speed.py runs end to end on a small workload: both generation sides do the same work (identical
responses), the HTTP judge keeps at most its limit in flight and reaches it. Speed is reported, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.cli import REPO
from support.training import training_env


@pytest.mark.slow
def test_the_evaluation_benchmark_reports_ratios_of_equal_work(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "eval_speed.py"), "--prompts", "4", "--n", "2",
                             "--max-new-tokens", "4", "--repeats", "1", "--comparisons", "4", "--work-dir",
                             str(tmp_path)], cwd=REPO, env=training_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    generation = report["generation"]
    assert generation["identical_outputs"] is True
    assert generation["ratio"] == round(min(generation["seconds"]["chatmodel_loop"])
                                        / min(generation["seconds"]["generate"]), 3)
    for part in ("http_judge", "http_judge_latency_bound"):
        assert report[part]["concurrency_1"]["max_in_flight"] == 1
        assert report[part]["concurrency_4"]["max_in_flight"] == 4
    assert report["http_judge"]["concurrency_4"]["requests"] == 8  # 4 comparisons, both orders, no retries
