"""The loop demo's files (config/loop/): the loop file reads without a problem and names the demo's configs; the
reward-model config is the one tests/support/reward_model.py trains the tests' judge with."""

from __future__ import annotations

from launcher.evaluate.loop_spec import read_loop

from support.cli import REPO


def test_the_demo_loop_file_reads_cleanly_and_runs_one_online_round_gated():
    spec = read_loop(REPO / "config" / "loop" / "demo_loop.yaml", cwd=REPO)
    (round_1,) = spec.rounds
    assert (round_1.name, round_1.config, round_1.changes) == ("online-1", REPO / "config" / "demo_dpo.yaml",
                                                               {"max_steps": 40})
    assert round_1.online is not None and round_1.online.judge.spec.target == ".demo/tiny-rm"
    assert (spec.output_dir, spec.evaluation.gate_text) == (REPO / ".demo" / "loop", "win_rate>=0.2")


def test_the_judge_config_trains_the_demo_model_into_the_path_the_loop_names():
    text = (REPO / "config" / "loop" / "demo_rm.yaml").read_text()
    assert "model_name_or_path: .demo/tiny-llama" in text and "output_dir: .demo/tiny-rm" in text
    assert text.splitlines()[0] == "# OMP_NUM_THREADS=1 llamafactory-cli train config/loop/demo_rm.yaml"
