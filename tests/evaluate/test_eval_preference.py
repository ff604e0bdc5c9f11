"""`dpo-launch eval RUN_DIR`: held-out preference metrics by LLaMA-Factory's own evaluation with the run's policy
and reference, the gate's exit codes, the results on disk and in TensorBoard. One real run serves every test."""

from __future__ import annotations

import json
import math

import pytest

from launcher.errors import EXIT_GATE_FAILED
from launcher.observe.events import EventReader, Scalar

from support.cli import run_cli, run_main
from support.training import make_workspace, training_env

STEPS = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A full fine-tuning run that evaluates demo_dpo at its last step (the trainer's own numbers)."""
    ws = make_workspace(tmp_path_factory.mktemp("eval") / "ws", tiny_model_dir, max_steps=STEPS,
                        learning_rate=3.0e-3, eval_dataset="demo_dpo", eval_strategy="steps", eval_steps=STEPS,
                        per_device_eval_batch_size=8)
    result = run_cli("train", "config.yaml", "--no-monitor", cwd=ws.root, env=training_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return ws


def trainer_eval(ws) -> dict:
    (entry,) = [e for e in ws.log_history() if "eval_rewards/accuracies" in e and e["step"] == STEPS]
    return entry


@pytest.mark.slow
def test_eval_reproduces_the_trainers_own_evaluation_at_the_last_step_and_logs_it(trained):
    result = run_cli("eval", "out", "--format", "json", cwd=trained.root, env=training_env())
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    expected = trainer_eval(trained)
    names = {"accuracy": "eval_rewards/accuracies", "margin": "eval_rewards/margins", "loss": "eval_loss",
             "chosen_logps": "eval_logps/chosen", "rejected_logps": "eval_logps/rejected"}
    for ours, theirs in names.items():
        assert math.isclose(summary["metrics"][ours], expected[theirs], rel_tol=1e-5, abs_tol=1e-6), ours
    part = summary["preference"]
    assert (part["policy"], part["reference"], part["count"]) == (
        str(trained.out), trained.values["model_name_or_path"], 256)
    assert json.loads((trained.out / "dpo-launch" / "eval" / "summary.json").read_text())["metrics"] == \
        summary["metrics"]
    # ... and in TensorBoard, at the run's last step
    scalars = {e.tag: e for e in EventReader(trained.out / "tensorboard" / "dpo-launch-eval").poll()
               if isinstance(e, Scalar)}
    assert {tag: (e.step, round(e.value, 5)) for tag, e in scalars.items()} == {
        "eval/heldout_accuracy": (STEPS, round(summary["metrics"]["accuracy"], 5)),
        "eval/heldout_margin": (STEPS, round(summary["metrics"]["margin"], 5)),
        "eval/heldout_loss": (STEPS, round(summary["metrics"]["loss"], 5)),
        "eval/heldout_logps_chosen": (STEPS, round(summary["metrics"]["chosen_logps"], 5)),
        "eval/heldout_logps_rejected": (STEPS, round(summary["metrics"]["rejected_logps"], 5))}


@pytest.mark.slow
def test_the_gate_exits_0_when_met_and_6_with_the_reason_when_not(trained):
    accuracy = trainer_eval(trained)["eval_rewards/accuracies"]
    passed = run_cli("eval", "out", "--gate", f"accuracy>={accuracy - 0.01:.4f}", cwd=trained.root,
                     env=training_env())
    assert passed.returncode == 0, passed.stderr[-3000:]
    assert f"gate accuracy>={accuracy - 0.01:.4f}: passed" in passed.stdout.splitlines()
    failed = run_cli("eval", "out", "--gate", f"accuracy>={accuracy + 0.01:.4f},margin>-100", cwd=trained.root,
                     env=training_env())
    assert failed.returncode == EXIT_GATE_FAILED == 6
    assert failed.stderr.splitlines()[-1] == (
        f"dpo-launch eval: gate failed: accuracy {accuracy:.3f} >= {accuracy + 0.01:.4f}: FAIL")
    gate = json.loads((trained.out / "dpo-launch" / "eval" / "summary.json").read_text())["gate"]
    assert [c["passed"] for c in gate["checks"]] == [False, True] and gate["passed"] is False


@pytest.mark.slow
def test_held_out_pairs_from_a_file_are_validated_first_and_errors_are_located(trained):
    good = trained.root / "heldout.jsonl"
    lines = (trained.root / "data" / "demo_dpo.jsonl").read_text().splitlines()[:16]
    good.write_text("\n".join(lines) + "\n")
    result = run_cli("eval", "out", "--pairs", str(good), "--format", "json", cwd=trained.root, env=training_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["preference"]["count"] == 16
    bad = trained.root / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + '{"conversations": [{"from": "human", "value": "2+2?"}], "chosen": "4", '
                   '"rejected": {"from": "gpt", "value": "5"}}\n')
    result = run_cli("eval", "out", "--pairs", str(bad), cwd=trained.root, env=training_env())
    assert result.returncode == 1
    assert any(line.startswith(f"{bad}:2: error[chosen-type]: record 1: chosen must be one message object")
               for line in result.stdout.splitlines()), result.stdout
    assert result.stderr.splitlines()[-1] == (
        f"dpo-launch eval: error: the held-out evaluation ({trained.out}/dpo-launch/eval/preference/config.yaml) "
        "has errors; nothing was evaluated")


def test_a_gate_on_held_out_metrics_needs_held_out_pairs(tmp_path):
    out = tmp_path / "out"
    (out / "dpo-launch").mkdir(parents=True)
    (out / "dpo-launch" / "resolved_config.json").write_text(json.dumps(
        {"model_name_or_path": "m", "stage": "dpo", "output_dir": str(out)}))
    result = run_main("eval", str(out), "--gate", "accuracy>=0.5", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (f"dpo-launch: error: --gate uses held-out metrics but {out} has no eval_dataset: pass "
                             "--pairs DATASET (a dataset name of the run's dataset_dir, or a ShareGPT ranking file)\n")
    result = run_main("eval", str(out), "--gate", "win_rate>=0.5", cwd=tmp_path)
    assert result.stderr == ("dpo-launch: error: --gate uses win_rate: pass --prompts FILE and --judge JUDGE to "
                             "measure it\n")
