"""threshold (limits, hysteresis, on/off delays), state and rate, driven like the agent drives them."""

from __future__ import annotations

from edge.rules import RuleConfig, RuleEngine

T0 = 1767542400000          # 2026-01-05 00:00 +08:00
S = 1000


def rule(kind: str, **params) -> RuleConfig:
    return RuleConfig("r", "p", "pressure", kind, severity="critical", params={k: v for k, v in params.items()})


def run(engine: RuleEngine, rows: list[tuple[int, object]], until: int | None = None) -> list[tuple[str, int]]:
    """Feed ``(offset ms, value)`` rows as the replay does (timers first); ``(state, offset)`` out."""
    found = []
    for offset, value in rows:
        found += engine.evaluate({"sensor": "p", "quantity": "pressure", "value": value,
                                  "quality": "bad" if value is None else "good", "ts": T0 + offset})
    if until is not None:
        found += engine.tick(T0 + until)
    return [(t["state"], t["ts"] - T0) for t in found]


def test_exactly_at_the_limit_is_not_out_and_just_past_it_raises_at_once():
    engine = RuleEngine([rule("threshold", below=0.10)])
    assert run(engine, [(0, 0.10), (3 * S, 0.0999)]) == [("raised", 3 * S)]
    assert run(engine, [(6 * S, 0.10)]) == [("cleared", 6 * S)]


def test_transition_carries_value_limit_and_both_messages():
    engine = RuleEngine([rule("threshold", above=2.0)])
    (t,) = engine.evaluate({"sensor": "p", "quantity": "pressure", "value": 2.5, "quality": "good", "ts": T0})
    assert t["alarm"] == "p/r" and t["value"] == 2.5 and t["limit"] == 2.0 and t["severity"] == "critical"
    assert t["rule"] == "threshold" and "above 2" in t["message"] and "高于" in t["message_zh"]


def test_hysteresis_band_neither_clears_nor_re_raises():
    engine = RuleEngine([rule("threshold", below=0.10, clear_above=0.12)])
    assert run(engine, [(0, 0.08), (3 * S, 0.11), (6 * S, 0.09), (9 * S, 0.12 - 1e-6)]) == [("raised", 0)]
    assert run(engine, [(12 * S, 0.12)]) == [("cleared", 12 * S)]


def test_on_delay_interrupted_one_second_early_does_not_raise():
    engine = RuleEngine([rule("threshold", below=0.10, **{"for": 10.0})])
    assert run(engine, [(0, 0.05), (9 * S, 0.05), (9 * S + 999, 0.11)], until=60 * S) == []


def test_on_delay_fires_at_its_due_time_without_waiting_for_a_reading():
    engine = RuleEngine([rule("threshold", below=0.10, **{"for": 10.0})])
    assert run(engine, [(0, 0.05), (3 * S, 0.06)]) == []
    assert engine.next_due() == T0 + 10 * S
    assert run(engine, [], until=10 * S - 1) == []
    assert run(engine, [], until=10 * S) == [("raised", 10 * S)]


def test_a_reading_exactly_at_the_due_time_comes_after_the_timer():
    engine = RuleEngine([rule("threshold", below=0.10, **{"for": 10.0})])
    assert run(engine, [(0, 0.05), (10 * S, 0.2)]) == [("raised", 10 * S), ("cleared", 10 * S)]


def test_off_delay_restarts_when_the_value_relapses():
    engine = RuleEngine([rule("threshold", below=0.10, clear_above=0.12, clear_for=10.0)])
    rows = [(0, 0.05), (3 * S, 0.13), (6 * S, 0.11), (9 * S, 0.13), (18 * S, 0.13)]
    assert run(engine, rows, until=30 * S) == [("raised", 0), ("cleared", 19 * S)]


def test_bad_readings_neither_raise_nor_clear_nor_break_a_delay():
    engine = RuleEngine([rule("threshold", above=1.0, **{"for": 10.0})])
    assert run(engine, [(0, None), (1 * S, 5.0), (5 * S, None)], until=11 * S) == [("raised", 11 * S)]
    assert run(engine, [(12 * S, None), (13 * S, float("nan"))], until=60 * S) == []


def test_above_and_below_in_one_rule_report_the_limit_crossed():
    engine = RuleEngine([rule("threshold", above=21.0, below=3.6)])
    found = engine.evaluate({"sensor": "p", "quantity": "pressure", "value": 2.0, "quality": "good", "ts": T0})
    assert [(t["state"], t["limit"]) for t in found] == [("raised", 3.6)]


def test_state_equals_false_for_a_delay():
    engine = RuleEngine([rule("state", equals=False, **{"for": 1200.0})])
    rows = [(0, True), (60 * S, False), (60 * S + 1199 * S, True), (2000 * S, False)]
    assert run(engine, rows, until=4000 * S) == [("raised", 3200 * S)]
    assert run(engine, [(4100 * S, True)]) == [("cleared", 4100 * S)]


def test_state_accepts_zero_and_one_for_false_and_true():
    engine = RuleEngine([rule("state", equals=True)])
    assert run(engine, [(0, 0.0), (1 * S, 1.0), (2 * S, 0)]) == [("raised", 1 * S), ("cleared", 2 * S)]


def test_rate_rise_and_fall_per_minute():
    engine = RuleEngine([rule("rate", rise=0.05, fall=0.05, per=60.0)])
    # +0.05 in 60 s is exactly the limit (not faster); +0.06 in 60 s is; a drop of 0.1 in 60 s is too.
    assert run(engine, [(0, 0.40), (60 * S, 0.45)]) == []
    assert run(engine, [(120 * S, 0.51)]) == [("raised", 120 * S)]
    assert run(engine, [(180 * S, 0.52)]) == [("cleared", 180 * S)]
    assert run(engine, [(240 * S, 0.42)]) == [("raised", 240 * S)]
