"""`dpo-launch report` shows what `dpo-launch eval` wrote (eval/summary.json), or says how to get it."""

from __future__ import annotations

import json

from launcher.observe.eval_section import evaluation_lines


def test_an_unevaluated_run_points_at_dpo_launch_eval(tmp_path):
    assert evaluation_lines(tmp_path) == [f"Not evaluated (run `dpo-launch eval {tmp_path}`)."]


def test_the_section_shows_held_out_metrics_win_rate_and_gate(tmp_path):
    folder = tmp_path / "dpo-launch" / "eval"
    folder.mkdir(parents=True)
    summary = {
        "step": 10, "evaluated_at": "2026-01-01T00:00:00+0000",
        "preference": {"pairs": ["demo_dpo"], "count": 256, "reference": "base",
                       "metrics": {"accuracy": 0.75, "margin": 0.5, "loss": 0.6, "chosen_logps": -40.0,
                                   "rejected_logps": -42.0}},
        "win_rate": {"baseline": "base", "judge": "rm:rm", "mean_length": {"policy": 12.5, "baseline": 10.0},
                     "counts": {"win_rate": 0.625, "wilson95_low": 0.306, "wilson95_high": 0.863, "wins": 5,
                                "losses": 3, "ties": 0, "invalid": 1}},
        "gate": {"expression": "accuracy>=0.7,win_rate>=0.5", "passed": False,
                 "checks": [{"reason": "accuracy 0.750 >= 0.7: pass"},
                            {"reason": "win_rate (Wilson 95% lower bound) 0.306 >= 0.5: FAIL"}]}}
    (folder / "summary.json").write_text(json.dumps(summary))
    assert evaluation_lines(tmp_path) == [
        "From `dpo-launch eval` at step 10 (2026-01-01T00:00:00+0000).", "",
        "Held-out pairs `demo_dpo` (256 pairs), reference `base`:", "",
        "| metric | value |", "| --- | --- |",
        "| reward accuracy | 0.7500 |", "| reward margin | 0.5000 |", "| chosen log-prob | -40.0000 |",
        "| rejected log-prob | -42.0000 |", "| loss | 0.6000 |", "",
        "Win rate against `base` judged by `rm:rm`: 0.625 (Wilson 95% 0.306 to 0.863; 5 wins, 3 losses, 0 ties, "
        "1 invalid); mean length 12.5 vs 10.0 tokens", "",
        "Gate `accuracy>=0.7,win_rate>=0.5`: **FAILED**",
        "- accuracy 0.750 >= 0.7: pass",
        "- win_rate (Wilson 95% lower bound) 0.306 >= 0.5: FAIL"]
