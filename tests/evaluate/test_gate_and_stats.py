"""The gate's grammar and verdicts, and the win-rate arithmetic (Wilson's interval, ties as half a win)."""

from __future__ import annotations

import math

import pytest

from launcher.errors import UsageError
from launcher.evaluate.gate import Condition, check_gate, gate_passed, needs, parse_gate
from launcher.evaluate.stats import wilson_interval, win_rate


def test_a_gate_string_becomes_one_condition_per_comma():
    assert parse_gate("accuracy>=0.7, win_rate > .6,margin<=2e-1") == [
        Condition("accuracy", ">=", 0.7), Condition("win_rate", ">", 0.6), Condition("margin", "<=", 0.2)]


@pytest.mark.parametrize(("text", "message"), [
    ("accuracy=>0.7", "--gate: cannot read 'accuracy=>0.7': expected METRIC OP NUMBER (OP one of >=, >, <=, <), "
                      "e.g. accuracy>=0.7,win_rate>=0.6"),
    ("acuracy>=0.7", "--gate: unknown metric 'acuracy': expected one of accuracy, margin, loss, chosen_logps, "
                     "rejected_logps, win_rate"),
    ("", "--gate: cannot read '': expected METRIC OP NUMBER (OP one of >=, >, <=, <), e.g. accuracy>=0.7,"
         "win_rate>=0.6"),
])
def test_a_gate_that_cannot_be_read_is_a_usage_error_naming_the_part(text, message):
    with pytest.raises(UsageError) as caught:
        parse_gate(text)
    assert str(caught.value) == message


def test_the_gate_says_which_evaluations_it_needs():
    assert needs(parse_gate("accuracy>=0.7,win_rate>=0.5")) == {"preference", "win_rate"}
    assert needs(parse_gate("margin>0")) == {"preference"}


def test_each_condition_reports_what_was_compared_and_the_verdict():
    checks = check_gate(parse_gate("accuracy>=0.7,win_rate>=0.6,margin>0"),
                        {"accuracy": 0.75, "win_rate": 0.41234})
    assert [c.reason for c in checks] == [
        "accuracy 0.750 >= 0.7: pass",
        "win_rate (Wilson 95% lower bound) 0.412 >= 0.6: FAIL",
        "margin was not computed"]
    assert not gate_passed(checks)
    assert gate_passed(check_gate(parse_gate("accuracy>=0.7"), {"accuracy": 0.7}))


def test_the_wilson_interval_matches_the_textbook_values():
    # Wilson (1927) / Newcombe (1998) table: 8 of 10 gives 0.4902 to 0.9433, 0 of 10 gives 0 to 0.2775.
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = wilson_interval(0, 10)
    assert (round(low, 4), round(high, 4)) == (0.0, 0.2775)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_ties_count_half_and_invalid_or_skipped_verdicts_stay_out_of_n():
    rate = win_rate(["win"] * 5 + ["loss"] * 2 + ["tie"] * 2 + ["invalid"] * 3 + ["skip"], order_disagreements=1)
    assert (rate.n, rate.rate) == (9, 6 / 9)
    assert rate.interval == wilson_interval(6, 9)
    assert rate.to_dict()["invalid"] == 3 and rate.to_dict()["skipped"] == 1
    assert rate.to_dict()["order_disagreements"] == 1
    assert math.isclose(rate.to_dict()["wilson95_low"], wilson_interval(6, 9)[0])


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="unknown outcomes"):
        win_rate(["win", "draw"])
