"""[[rule]] tables: what a valid rule becomes, and every problem named by its key path."""

from __future__ import annotations

import pytest

from edge.config import validate
from edge.errors import ConfigError
from edge.rules import RuleConfig

BASE = {
    "gateway": {"id": "gw-1", "grid": "b07"},
    "bus": [{"name": "gpio", "kind": "gpio", "pin_factory": "mock"}],
    "sensor": [{"id": "meter", "driver": "pulse_meter", "bus": "gpio", "pin": 17, "litres_per_pulse": 1.0}],
}


def rules(*tables: dict) -> tuple[RuleConfig, ...]:
    return validate({**BASE, "rule": list(tables)}).rules


def problems(*tables: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate({**BASE, "rule": list(tables)})
    return caught.value.problems


def meter(**keys) -> dict:
    return {"id": "r", "sensor": "meter", "quantity": "volume", **keys}


def test_no_rules_is_an_empty_tuple():
    assert validate(BASE).rules == ()


def test_a_rule_with_its_defaults_durations_in_seconds_and_a_window_crossing_midnight():
    (rule,) = rules(meter(kind="inactivity", min_increase=0.01, window="12h", active="22:00-06:30"))
    assert rule == RuleConfig("r", "meter", "volume", "inactivity", severity="warning", active=(1320, 390),
                              params={"min_increase": 0.01, "window": 43200.0})
    assert rule.alarm == "meter/r"


def test_threshold_with_hysteresis_and_delays():
    (rule,) = rules(meter(kind="threshold", below=1, clear_above=1.5, severity="critical", latch=True,
                          suppress_when_away=True, message="check the main", **{"for": "10s"}))
    assert rule.params == {"below": 1.0, "clear_above": 1.5, "for": 10.0, "clear_for": 0.0}
    assert (rule.severity, rule.latch, rule.suppress_when_away, rule.message) == ("critical", True, True,
                                                                                   "check the main")


def test_state_equals_a_bool_or_a_number_and_count_defaults_to_rising_edges():
    assert rules(meter(kind="state", equals=False))[0].params["equals"] is False
    assert rules(meter(kind="state", equals=2))[0].params["equals"] == 2.0
    assert rules(meter(kind="count", above=6, window="1h"))[0].params == {"edges": "rising", "above": 6,
                                                                          "window": 3600.0}


def test_unknown_sensor_quantity_and_kind_are_reported_with_suggestions():
    assert problems({"id": "r", "sensor": "metre", "quantity": "volume", "kind": "stale", "after": "1h"}) == [
        'rule[0].sensor: no [[sensor]] with id "metre"; did you mean "meter"?']
    assert problems(meter(quantity="pressure", kind="stal", after="1h")) == [
        'rule[0].quantity: sensor "meter" does not report "pressure"; it reports "volume"',
        'rule[0].kind: unknown rule kind "stal"; did you mean "stale"?']


def test_threshold_limits_must_make_sense_together():
    assert problems(meter(kind="threshold", clear_below=3)) == [
        "rule[0].above: a threshold rule needs above, below or both",
        "rule[0].clear_below: is only used with rule[0].above"]
    assert problems(meter(kind="threshold", above=1, below=2, clear_below=3)) == [
        "rule[0].below: must be below rule[0].above (1), got 2",
        "rule[0].clear_below: must not be above rule[0].above (1), got 3"]
    assert problems(meter(kind="threshold", below=1, clear_above=0.5)) == [
        "rule[0].clear_above: must not be below rule[0].below (1), got 0.5"]


def test_keys_of_another_kind_and_typos_are_unknown():
    assert problems(meter(kind="inactivity", min_increase=0.01, window="12h", **{"for": "1m"})) == [
        "rule[0].for: unknown key"]
    assert problems(meter(kind="stale", aftr="1h")) == [
        "rule[0].after: is required", 'rule[0].aftr: unknown key; did you mean "after"?']


def test_window_duplicates_bins_and_limits():
    found = problems(meter(kind="stale", after="1h", active="22:00-22:00"),
                     meter(kind="stale", after="1h"),
                     {**meter(kind="continuous_use", bin="7m", window="1h", min_increase=0), "id": "leak"},
                     {**meter(kind="rate", per="1m"), "id": "fast"})
    assert found == [
        'rule[0].active: expected a daily window like "22:00-06:00" (start and end differ), got "22:00-22:00"',
        'rule[1].id: "meter/r" is already used by rule[0]',
        'rule[2].window: must be a whole number of bins ("7m"), got "1h"',
        "rule[2].min_increase: must be greater than 0, got 0",
        "rule[3].rise: a rate rule needs rise, fall or both"]


def test_severity_and_missing_common_keys():
    assert problems({"sensor": "meter", "kind": "stale", "after": "1h", "severity": "urgent"}) == [
        "rule[0].id: is required", "rule[0].quantity: is required",
        'rule[0].severity: expected one of "info", "warning", "critical", got "urgent"']


@pytest.mark.parametrize("keys, key", [
    ({"kind": "threshold", "above": float("nan")}, "above"),
    ({"kind": "threshold", "below": float("-inf")}, "below"),
    ({"kind": "daily_total", "above": float("inf")}, "above"),
    ({"kind": "inactivity", "min_increase": float("nan"), "window": "1h"}, "min_increase"),
])
def test_no_rule_limit_may_be_nan_or_infinite(keys, key):
    [problem] = problems(meter(**keys))
    assert problem.startswith(f"rule[0].{key}: expected a finite number, got ")
