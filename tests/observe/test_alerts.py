"""Health alert rules, driven by recorded metric streams (tests/data/metric_streams/).

Streams named `*_dpo.jsonl`/`kto.jsonl` were recorded from real tiny runs with record_stream.py; the
others are those recordings with one documented edit (make_synthetic.py), each with a near-miss twin.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from launcher.observe.alerts import RULES, AlertEngine, Thresholds, evaluate_stream, parse_stop_on, parse_thresholds

STREAMS = Path(__file__).resolve().parents[1] / "data" / "metric_streams"

# stream -> {rule: first step it fires}; every other rule must stay silent on that stream.
EXPECTED = {
    "healthy_dpo": {},
    "healthy_dpo_120": {},
    "lr_zero_dpo": {"loss-stuck-at-ln2": 50, "margins-near-zero": 100},
    "lr_zero_99_steps": {"loss-stuck-at-ln2": 50},
    "ln2_wobble": {"margins-near-zero": 100},
    "nan_beta_1e38_dpo": {"loss-not-finite": 1},
    "saturated_early": {"accuracy-saturated-early": 12},
    "saturated_late": {},
    "displacement": {"likelihood-displacement": 12},
    "both_falling": {},
    "rewards_falling": {"rewards-both-falling": 19},
    "rewards_falling_near": {},
    "eval_falling": {"eval-overoptimization": 50},
    "eval_loss_rising": {"eval-loss-rising": 30},
    "eval_loss_rising_near": {},
    "eval_rising": {},
    "eval_lr3e-2_dpo": {"eval-overoptimization": 35},
    "grad_spike": {"grad-norm-spike": 40},
    "grad_bump": {},
    "kto": {"grad-norm-spike": 12},
}


def load_stream(name: str) -> list[tuple[int, dict[str, float]]]:
    points = []
    for line in (STREAMS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "step" in record:
            step = record.pop("step")
            points.append((step, {tag: float(value) for tag, value in record.items()}))
    return points


def first_steps(alerts) -> dict[str, int]:
    found: dict[str, int] = {}
    for alert in alerts:
        found.setdefault(alert.rule, alert.step)
    return found


@pytest.mark.parametrize("stream", sorted(EXPECTED))
def test_recorded_stream_raises_exactly_the_expected_alerts(stream):
    assert first_steps(evaluate_stream(load_stream(stream))) == EXPECTED[stream]


def test_every_rule_fires_on_some_stream_and_every_stream_file_is_checked():
    fired = {rule for expected in EXPECTED.values() for rule in expected}
    assert fired == set(RULES)
    assert {p.stem for p in STREAMS.glob("*.jsonl")} == set(EXPECTED)


def test_nan_alert_names_the_non_finite_tag_even_when_train_loss_looks_finite():
    points = load_stream("nan_beta_1e38_dpo")
    assert math.isfinite(points[3][1]["train/loss"])  # HF's logging_nan_inf_filter hides it
    alert = evaluate_stream(points)[0]
    assert alert.render() == ("error[loss-not-finite] step 1: non-finite values: train/grad_norm=nan (lower the "
                              "learning rate, check the data for empty answers, use bf16 over fp16)")


def test_loss_stuck_message_states_the_value_and_the_window():
    alert = first_alert(load_stream("lr_zero_dpo"), "loss-stuck-at-ln2")
    assert alert.message == "loss has stayed at ln 2 = 0.6931 (within 0.002) for the last 20 points"


def test_both_rewards_falling_while_margins_grow_says_what_since_when_and_what_to_do():
    # The reported run: margins grew, chosen reward reached -0.64 by step 50, logps/chosen fell too little over
    # the window (1.3 nats over 50 steps) for likelihood-displacement.
    stream = load_stream("rewards_falling")
    assert dict(stream)[50]["train/rewards/chosen"] < -0.6
    alert = first_alert(stream, "rewards-both-falling")
    assert alert.render() == (
        "warning[rewards-both-falling] step 19: rewards/chosen fell to -0.308 and rewards/rejected to -0.601 while "
        "margins grew by 0.287 over the last 19 points; the chosen reward has been below 0 since step 1: the margin "
        "grows only because the rejected answer falls faster, and the chosen answer is less likely than under the "
        "reference (it should rise) (lower the learning rate, add an SFT term (pref_ftx, e.g. 0.1 to 1.0) or try "
        "pref_loss: ipo; keep an earlier checkpoint if generations got worse)")


def test_both_rewards_falling_near_miss_stays_silent_until_the_threshold_is_met():
    # Chosen ends at -0.24 (mean of the last 3 points), short of falling_chosen_reward 0.3; at 0.2 it fires.
    near = load_stream("rewards_falling_near")
    assert first_steps(evaluate_stream(near)) == {}
    assert "rewards-both-falling" in first_steps(evaluate_stream(near, parse_thresholds(["falling_chosen_reward=0.2"])))


def test_eval_loss_rising_fires_although_eval_accuracy_was_low_from_the_start():
    stream = load_stream("eval_loss_rising")
    assert max(m["eval/rewards/accuracies"] for _, m in stream if "eval/rewards/accuracies" in m) <= 0.3
    alert = first_alert(stream, "eval-loss-rising")
    assert alert.render() == (
        "warning[eval-loss-rising] step 30: eval loss rose from 5.250 at step 20 to 6.650 at step 30 (each the mean "
        "of 2 evals), 27% above its best, while train accuracy was 1.000: since step 20 the policy fits the "
        "training pairs better and unseen pairs worse (over-fitting: keep the checkpoint nearest step 20 "
        "(load_best_model_at_end with metric_for_best_model: eval_loss), stop earlier, lower the learning rate or "
        "pref_beta, or add training data)")
    # The whole reported rise, 4.6 -> 11.8, is in the stream; the rule says so once (repeat_after 100).
    assert [a.step for a in evaluate_stream(stream) if a.rule == "eval-loss-rising"] == [30]


def test_eval_loss_rising_stays_silent_while_train_accuracy_is_at_chance():
    """The same rise with the training pairs not fitted (train accuracy 0.5) is not over-fitting."""
    stream = [(step, {key: 0.5 if key == "train/rewards/accuracies" else value for key, value in metrics.items()})
              for step, metrics in load_stream("eval_loss_rising")]
    assert "eval-loss-rising" not in first_steps(evaluate_stream(stream))
    lowered = parse_thresholds(["eval_loss_train_accuracy=0.5"])
    assert first_steps(evaluate_stream(stream, lowered))["eval-loss-rising"] == 30


def test_eval_loss_rising_near_miss_stays_silent_until_the_threshold_is_met():
    near = load_stream("eval_loss_rising_near")  # the last two evals 18% above the first two
    assert first_steps(evaluate_stream(near)) == {}
    assert first_steps(evaluate_stream(near, parse_thresholds(["eval_loss_rise=0.15"]))) == {"eval-loss-rising": 60}


def test_a_rule_fires_again_only_after_repeat_after_steps():
    alerts = evaluate_stream(load_stream("nan_beta_1e38_dpo"), parse_thresholds(["repeat_after=5"]))
    assert [a.step for a in alerts if a.rule == "loss-not-finite"] == [1, 6, 11, 16]


def test_thresholds_change_what_fires():
    stream = load_stream("lr_zero_dpo")
    later = parse_thresholds(["margin_min_steps=200", "ln2-min-steps=110"])
    assert first_steps(evaluate_stream(stream, later)) == {"loss-stuck-at-ln2": 110}
    looser = parse_thresholds(["spike_factor=5000"])
    assert first_steps(evaluate_stream(load_stream("kto"), looser)) == {}


def test_parse_thresholds_keeps_types_and_defaults():
    thresholds = parse_thresholds(["window=30", "margin_zero_tol=0.1"])
    assert (thresholds.window, thresholds.margin_zero_tol, thresholds.spike_factor) == (30, 0.1, 10.0)
    assert isinstance(thresholds.window, int)


def test_unknown_threshold_suggests_the_closest_name():
    with pytest.raises(ValueError) as info:
        parse_thresholds(["windw=3"])
    names = ", ".join(sorted(Thresholds.__dataclass_fields__))
    assert str(info.value) == (f"alert threshold 'windw=3': expected NAME=VALUE with NAME one of {names} "
                               f"(did you mean 'window'?)")


def test_threshold_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError) as info:
        parse_thresholds(["window=wide"])
    assert str(info.value) == "alert threshold 'window=wide': 'wide' is not a number"


def test_stop_on_defaults_to_nan_and_accepts_none_and_lists():
    assert parse_stop_on(None) == ("loss-not-finite",)
    assert parse_stop_on("none") == ()
    assert parse_stop_on("") == ()
    assert parse_stop_on("grad-norm-spike, loss-not-finite") == ("grad-norm-spike", "loss-not-finite")


def test_stop_on_unknown_alert_lists_the_choices_and_suggests_one():
    with pytest.raises(ValueError) as info:
        parse_stop_on("grad-norm-spik")
    assert str(info.value) == (
        "--stop-on: expected one of loss-not-finite, margins-near-zero, accuracy-saturated-early, "
        "loss-stuck-at-ln2, likelihood-displacement, rewards-both-falling, eval-overoptimization, eval-loss-rising, "
        "grad-norm-spike (or 'none') but got "
        "'grad-norm-spik' (did you mean 'grad-norm-spike'?)")


def test_engine_fed_point_by_point_matches_the_whole_stream():
    stream = load_stream("eval_lr3e-2_dpo")
    engine = AlertEngine()
    live = [alert for step, metrics in stream for alert in engine.feed(step, metrics)]
    assert live == evaluate_stream(stream)


def test_alerts_serialise_to_strict_json_fields():
    alert = first_alert(load_stream("grad_spike"), "grad-norm-spike")
    assert set(alert.to_json()) == {"rule", "severity", "step", "message", "hint", "values"}
    assert alert.severity == "warning" and alert.step == 40


def first_alert(stream, rule):
    return next(a for a in evaluate_stream(stream) if a.rule == rule)
