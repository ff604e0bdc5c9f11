"""Reward metrics stream to TensorBoard while a real `dpo-launch train` runs; the worker's callback raises
alerts, writes alerts.jsonl and TensorBoard text, and `--stop-on` (DPO_LAUNCH_STOP_ON) ends a run with a checkpoint.

`live_run()` (tests/support/training.py) is shared with the monitor, events, report and TensorBoard tests: one real
60-step run per session, read with launcher.observe.events while it runs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from launcher.observe.alerts import settings_from_env
from launcher.observe.events import Scalar, Text, read_all
from launcher.worker.metrics import AlertStop, RewardMetrics, rewrite_tags

from support.training import REWARD_TAGS, LiveRun, live_run, make_workspace, training_env


@pytest.fixture
def run(tmp_path_factory, tiny_model_dir) -> LiveRun:
    result = live_run(tmp_path_factory, tiny_model_dir)
    assert result.returncode == 0, result.output[-4000:]
    return result


@pytest.mark.slow
def test_first_steps_reward_tags_are_readable_while_the_run_is_still_going(run):
    running = {(tag, step): run.seen[(tag, step)][2] for step in (1, 2, 3) for tag in ("train/loss", *REWARD_TAGS)}
    assert running == dict.fromkeys(running, True), "read only after the job ended: " + \
        ", ".join(f"{tag}@{step}" for (tag, step), live in running.items() if not live)
    # what the live reader saw is what the finished run's files hold, for every logged step; a step can hold two
    # values of a tag (the last periodic eval and the final eval both log at the last step, with their own runtimes)
    final: dict[tuple[str, int], list[float]] = {}
    for event in read_all(run.out / "tensorboard"):
        if isinstance(event, Scalar):
            final.setdefault((event.tag, event.step), []).append(event.value)
    assert set(run.seen) <= set(final)
    not_in_files = {key: (seen[3], final[key]) for key, seen in run.seen.items() if seen[3] not in final[key]}
    assert not_in_files == {}
    latencies = run.latencies()
    print(f"\nstreaming latency over {len(latencies)} steps: median {sorted(latencies)[len(latencies) // 2]:.3f} s, "
          f"max {max(latencies):.3f} s")


@pytest.mark.slow
def test_every_logged_metric_of_issue_4_reaches_tensorboard(run):
    tags = {tag for tag, _ in run.seen}
    expected = {"train/loss", "train/grad_norm", "train/learning_rate", *REWARD_TAGS, "train/logps/chosen",
                "train/logps/rejected", "train/logits/chosen", "train/logits/rejected", "eval/loss",
                "eval/rewards/accuracies", "eval/rewards/margins", "eval/rewards/chosen", "eval/rewards/rejected"}
    assert expected <= tags
    assert sorted(step for tag, step in run.seen if tag == "train/rewards/accuracies") == list(range(1, 61))


@pytest.mark.slow
def test_the_first_step_logs_the_closed_form_loss_and_zero_rewards(run):
    first = {tag: value for tag, value in scalars_at(run.out, 1).items() if tag in ("train/loss", *REWARD_TAGS)}
    assert first == {"train/loss": pytest.approx(math.log(2), abs=1e-6), **{t: 0.0 for t in REWARD_TAGS}}


@pytest.mark.slow
def test_resolved_config_plan_and_runtime_are_tensorboard_text_once(run):
    texts = [e for e in read_all(run.out / "tensorboard") if isinstance(e, Text) and e.run == "dpo-launch"]
    by_tag = {e.tag: e.text for e in texts}
    assert sorted(by_tag) == ["dpo-launch/plan/text_summary", "dpo-launch/resolved_config/text_summary",
                              "dpo-launch/runtime/text_summary"]
    assert len(texts) == 3
    resolved = json.loads((run.out / "dpo-launch" / "resolved_config.json").read_text(encoding="utf-8"))
    assert json.loads(dedent4(by_tag["dpo-launch/resolved_config/text_summary"])) == resolved


@pytest.mark.slow
def test_max_steps_is_written_for_the_monitor_eta(run):
    assert scalars_at(run.out, 0)["progress/max_steps"] == 60


@pytest.mark.slow
def test_nan_stops_the_run_after_saving_a_checkpoint(tmp_path, tiny_model_dir):
    # pref_beta 1e38 overflows the first step's gradient: grad_norm is NaN at step 1 while the loss is still ln 2.
    ws = make_workspace(tmp_path / "nan", tiny_model_dir, pref_beta=1e38, max_steps=30, learning_rate=1e-2)
    result = subprocess.run([sys.executable, "-m", "launcher", "train", "config.yaml", "--no-monitor"], cwd=ws.root,
                            env=training_env(), capture_output=True, text=True, timeout=900, check=False)
    # exit 4 (EXIT_ALERT_STOP), not 0: a run stopped by an alert did not finish (issue 11, item 10)
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-3000:]
    assert [p.name for p in ws.out.glob("checkpoint-*")] == ["checkpoint-1"]
    state = json.loads((ws.out / "checkpoint-1" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["log_history"][-1]["step"] == 1
    # LLaMA-Factory's after-training work is skipped: no final weights or trainer_state.json in output_dir
    assert not (ws.out / "model.safetensors").exists() and not (ws.out / "trainer_state.json").exists()
    alerts = [json.loads(line) for line in (ws.out / "dpo-launch" / "alerts.jsonl").read_text().splitlines()]
    assert [(a["rule"], a["step"], a["values"]) for a in alerts] == [("loss-not-finite", 1, {"train/grad_norm": "nan"})]
    assert "dpo-launch: stopping the run at step 1 because of loss-not-finite (--stop-on); saving a checkpoint " \
           "first" in result.stdout + result.stderr
    texts = [e for e in read_all(ws.out / "tensorboard") if isinstance(e, Text) and e.tag.startswith("alerts/")]
    assert [(e.tag, e.step) for e in texts] == [("alerts/loss-not-finite/text_summary", 1)]


# --- the callback's logic, without a trainer ----------------------------------------------------------

def fake_trainer(step: int, world_zero: bool = False, accumulation: int = 1, world: int = 1):
    args = SimpleNamespace(gradient_accumulation_steps=accumulation, world_size=world, output_dir="out")
    state = SimpleNamespace(is_world_process_zero=world_zero, global_step=step, max_steps=10)
    return args, state, SimpleNamespace(should_save=False, should_training_stop=False)


def test_every_rank_stops_on_a_stop_on_alert_but_only_rank_0_writes(tmp_path):
    callback = RewardMetrics(tmp_path, stop_on=("loss-not-finite",))
    args, state, control = fake_trainer(1)
    callback.on_train_begin(args, state, control)
    control = callback.on_log(args, state, control, logs={"loss": 0.69, "grad_norm": float("nan")})
    assert (control.should_save, control.should_training_stop) == (True, True)
    assert not (tmp_path / "dpo-launch" / "alerts.jsonl").exists()


def test_the_trainers_end_after_a_stop_on_alert_raises_alert_stop_with_the_checkpoint(tmp_path):
    callback = RewardMetrics(tmp_path, stop_on=("loss-not-finite",))
    callback.is_main = True
    args, state, control = fake_trainer(3, world_zero=True)
    callback.on_log(args, state, control, logs={"loss": float("nan")})
    with pytest.raises(AlertStop) as raised:
        callback.on_train_end(args, state, control)
    assert (raised.value.alert.rule, raised.value.alert.step, raised.value.checkpoint) == \
        ("loss-not-finite", 3, "out/checkpoint-3")
    assert str(raised.value) == "stopped by the loss-not-finite alert at step 3"
    (record,) = [json.loads(line) for line in (tmp_path / "dpo-launch" / "alerts.jsonl").read_text().splitlines()]
    assert (record["rule"], record["stopped_run"]) == ("loss-not-finite", True)


def test_the_trainers_end_without_a_stop_on_alert_ends_normally(tmp_path):
    callback = RewardMetrics(tmp_path, stop_on=("grad-norm-spike",))
    args, state, control = fake_trainer(3)
    callback.on_log(args, state, control, logs={"loss": float("nan")})  # reported, but not a --stop-on alert
    assert callback.on_train_end(args, state, control) is control


def test_an_alert_not_in_stop_on_is_reported_and_training_goes_on(tmp_path):
    callback = RewardMetrics(tmp_path, stop_on=())
    callback.is_main = True  # rank 0 without a TensorBoard writer: alerts.jsonl and stderr only
    args, state, control = fake_trainer(1, world_zero=True)
    control = callback.on_log(args, state, control, logs={"loss": 0.69, "grad_norm": float("inf")})
    assert (control.should_save, control.should_training_stop) == (False, False)
    (record,) = [json.loads(line) for line in (tmp_path / "dpo-launch" / "alerts.jsonl").read_text().splitlines()]
    assert (record["rule"], record["step"], record["values"]) == ("loss-not-finite", 1, {"train/grad_norm": "inf"})
    assert "stopped_run" not in record


def test_kto_kl_mean_divides_the_sum_by_steps_accumulation_and_ranks(tmp_path):
    callback = RewardMetrics(tmp_path)
    args, state, control = fake_trainer(0, accumulation=2, world=2)
    callback.on_train_begin(args, state, control)
    state.global_step = 5
    metrics = {}
    callback._add_kl_mean(metrics, 5, {"loss": 0.5, "kl": 40.0})
    assert metrics == {"train/kl_mean": 40.0 / (5 * 2 * 2)}
    callback._add_kl_mean(metrics, 5, {"eval_loss": 0.5, "kl": 7.0})  # eval's unprefixed kl: left alone
    assert metrics == {"train/kl_mean": 2.0}


def test_log_keys_become_the_tags_hf_writes():
    assert rewrite_tags({"loss": 1, "eval_rewards/margins": 0.5, "test_loss": 2, "note": "x", "flag": True}) == {
        "train/loss": 1.0, "eval/rewards/margins": 0.5, "test/loss": 2.0}


def test_stop_on_and_thresholds_come_from_the_environment():
    stop_on, thresholds = settings_from_env({"DPO_LAUNCH_STOP_ON": "grad-norm-spike",
                                             "DPO_LAUNCH_ALERT_THRESHOLDS": "window=5, spike_factor=3"})
    assert (stop_on, thresholds.window, thresholds.spike_factor) == (("grad-norm-spike",), 5, 3.0)
    assert settings_from_env({})[0] == ("loss-not-finite",)


def scalars_at(out: Path, step: int) -> dict[str, float]:
    return {e.tag: e.value for e in read_all(out / "tensorboard") if isinstance(e, Scalar) and e.step == step}


def dedent4(text: str) -> str:
    return "\n".join(line[4:] for line in text.splitlines())
