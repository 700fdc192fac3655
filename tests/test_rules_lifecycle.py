"""count and stale, then what every kind shares: active windows, latch and acknowledge, away, restart."""

from __future__ import annotations

import json

import pytest

from edge.rules import RuleConfig, RuleEngine, RuleError

T0 = 1767542400000          # 2026-01-05 00:00 +08:00
M = 60_000
H = 60 * M


def rule(kind: str, rule_id: str = "r", **common_and_params) -> RuleConfig:
    common = {k: common_and_params.pop(k) for k in ("active", "latch", "suppress_when_away")
              if k in common_and_params}
    return RuleConfig(rule_id, "s", "q", kind, params=common_and_params, **common)


def reading(offset: int, value, quality: str = "good") -> dict:
    return {"sensor": "s", "quantity": "q", "value": value, "quality": quality, "ts": T0 + offset}


def run(engine: RuleEngine, rows, until: int | None = None) -> list[tuple[str, str, int]]:
    found = []
    for row in rows:
        found += engine.evaluate(reading(*row))
    if until is not None:
        found += engine.tick(T0 + until)
    return [(t["alarm"], t["state"], t["ts"] - T0) for t in found]


# --- count -----------------------------------------------------------------------------------------------
def test_count_raises_on_the_edge_past_the_limit_and_clears_when_the_oldest_leaves_the_window():
    engine = RuleEngine([rule("count", edges="rising", above=2, window=3600.0)])
    rows = [(0, False)] + [(m * M, v) for m in range(1, 7) for v in ([True] if m % 2 else [False])]
    # rising edges at 1, 3, 5 min: the third is more than 2
    assert run(engine, rows) == [("s/r", "raised", 5 * M)]
    assert run(engine, [], until=61 * M - 1) == []
    assert run(engine, [], until=61 * M) == [("s/r", "cleared", 61 * M)]


def test_count_falling_edges_and_the_first_reading_is_no_edge():
    engine = RuleEngine([rule("count", edges="falling", above=0, window=60.0)])
    assert run(engine, [(0, False), (1 * M, True)]) == []
    assert run(engine, [(1 * M + 1, False)]) == [("s/r", "raised", 1 * M + 1)]


# --- stale -----------------------------------------------------------------------------------------------
def test_stale_counts_from_the_last_good_reading_bad_ones_do_not_help():
    engine = RuleEngine([rule("stale", after=3600.0)])
    assert run(engine, [(0, 1.0), (15 * M, None, "bad"), (59 * M, None, "bad")], until=60 * M) == [
        ("s/r", "raised", 60 * M)]
    assert run(engine, [(90 * M, 1.0)]) == [("s/r", "cleared", 90 * M)]


def test_stale_sensor_that_never_spoke_goes_stale_from_start_up():
    engine = RuleEngine([rule("stale", after=600.0)])
    assert engine.tick(T0) == []
    assert [(t["state"], t["ts"] - T0) for t in engine.tick(T0 + H)] == [("raised", 10 * M)]


# --- active window ---------------------------------------------------------------------------------------
def night_rule(**extra) -> RuleConfig:
    return rule("state", equals=False, active=(22 * 60, 6 * 60), **{"for": 1200.0}, **extra)


def test_window_crossing_midnight_gates_raising_and_the_delay_starts_when_it_opens():
    engine = RuleEngine([night_rule()])
    # out of bed from 21:50: the delay counts from 22:00, so 22:20
    assert run(engine, [(21 * H + 50 * M, False)], until=22 * H + 20 * M) == [("s/r", "raised", 22 * H + 20 * M)]


def test_window_closing_cancels_a_pending_delay_and_daytime_is_silent():
    engine = RuleEngine([night_rule()])
    # up at 05:50 (the day is 2026-01-05): 06:10 would be due, but the window closed at 06:00
    assert run(engine, [(5 * H + 50 * M, False)], until=12 * H) == []


def test_a_raised_alarm_outlives_its_window_until_the_condition_is_gone():
    engine = RuleEngine([night_rule()])
    assert run(engine, [(5 * H + 30 * M, False)], until=7 * H) == [("s/r", "raised", 5 * H + 50 * M)]
    assert run(engine, [(7 * H + 5 * M, True)]) == [("s/r", "cleared", 7 * H + 5 * M)]


def test_window_in_another_zone_uses_that_zones_midnight():
    engine = RuleEngine([rule("threshold", above=1.0, active=(0, 60))], timezone="UTC")
    # 00:30 UTC is 08:30 in Shanghai: inside a 00:00-01:00 window only for a UTC gateway
    assert run(engine, [(8 * H + 30 * M, 2.0)]) == [("s/r", "raised", 8 * H + 30 * M)]


# --- latch and acknowledge -------------------------------------------------------------------------------
def test_latched_alarm_stays_until_acknowledged_then_clears():
    engine = RuleEngine([rule("threshold", above=1.0, latch=True)])
    assert run(engine, [(0, 2.0), (1 * M, 0.5)]) == [("s/r", "raised", 0)]
    found = engine.acknowledge("s/r", T0 + 5 * M)
    assert [(t["state"], t["ts"] - T0) for t in found] == [("acknowledged", 5 * M), ("cleared", 5 * M)]
    assert engine.acknowledge("s/r", T0 + 6 * M) == []


def test_acknowledged_while_still_out_clears_when_the_condition_goes():
    engine = RuleEngine([rule("threshold", above=1.0, latch=True)])
    run(engine, [(0, 2.0)])
    assert [t["state"] for t in engine.acknowledge("s/r", T0 + M)] == ["acknowledged"]
    assert run(engine, [(2 * M, 0.5)]) == [("s/r", "cleared", 2 * M)]


def test_acknowledge_of_an_unlatched_alarm_is_an_event_and_unknown_names_are_refused():
    engine = RuleEngine([rule("threshold", above=1.0)])
    assert engine.acknowledge("s/r", T0) == []          # nothing raised, nothing to acknowledge
    run(engine, [(0, 2.0)])
    assert [t["state"] for t in engine.acknowledge("s/r", T0 + M)] == ["acknowledged"]
    assert run(engine, [(2 * M, 0.5)]) == [("s/r", "cleared", 2 * M)]
    with pytest.raises(RuleError, match="no rule makes the alarm 's/nope'"):
        engine.acknowledge("s/nope", T0)


# --- away ------------------------------------------------------------------------------------------------
def test_away_suppresses_marked_rules_only_and_reports_itself():
    quiet = rule("inactivity", "quiet", min_increase=0.01, window=3600.0, suppress_when_away=True)
    leak = rule("daily_total", "over", above=1.0)
    engine = RuleEngine([quiet, leak])
    run(engine, [(0, 10.0)])
    found = engine.set_away(T0 + 10 * H, T0 + 30 * M)
    assert [(t["alarm"], t["state"]) for t in found] == [("gateway/away", "raised")]
    assert run(engine, [(2 * H, 10.0), (3 * H, 11.5)]) == [("s/over", "raised", 3 * H)]
    # back at 10:00: the hour of quiet counts from the return, not from the departure
    assert run(engine, [], until=11 * H - 1) == [("gateway/away", "cleared", 10 * H)]
    assert run(engine, [], until=11 * H) == [("s/quiet", "raised", 11 * H)]


def test_going_away_clears_a_raised_suppressed_alarm_and_ending_early_works():
    engine = RuleEngine([rule("inactivity", min_increase=0.01, window=3600.0, suppress_when_away=True)])
    assert run(engine, [(0, 1.0)], until=2 * H) == [("s/r", "raised", 1 * H)]
    found = engine.set_away(T0 + 48 * H, T0 + 2 * H)
    assert [(t["alarm"], t["state"]) for t in found] == [("gateway/away", "raised"), ("s/r", "cleared")]
    assert "away" in found[1]["message"]
    assert [(t["alarm"], t["state"]) for t in engine.set_away(None, T0 + 3 * H)] == [("gateway/away", "cleared")]
    with pytest.raises(RuleError):
        engine.set_away(T0, T0 + 4 * H)


# --- restart ---------------------------------------------------------------------------------------------
def rules_for_restart() -> list[RuleConfig]:
    return [rule("inactivity", "quiet", min_increase=0.01, window=12 * 3600.0),
            rule("continuous_use", "leak", bin=1800.0, window=2 * 3600.0, min_increase=0.001),
            rule("daily_total", "over", above=0.04),
            rule("threshold", "high", above=10.02, **{"for": 600.0}),
            rule("stale", "silent", after=7200.0)]


def trace() -> list[tuple[int, float]]:
    rows, value = [], 10.0
    for n in range(0, 24 * 4):          # a leak for 3 h, then nothing for the rest of the day
        value += 0.004 if n < 12 else 0.0
        rows.append((n * 15 * M + 5 * M, round(value, 6)))
    return rows


def test_restore_mid_window_continues_exactly_like_an_uninterrupted_run():
    rows = trace()
    whole = RuleEngine(rules_for_restart())
    expected = run(whole, rows, until=30 * H)
    assert {alarm for alarm, _, _ in expected} >= {"s/quiet", "s/leak", "s/over", "s/high", "s/silent"}

    for cut in (7, 20, 50):
        first = RuleEngine(rules_for_restart())
        before = run(first, rows[:cut])
        saved = json.loads(json.dumps(first.snapshot()))       # as it is stored: JSON
        second = RuleEngine(rules_for_restart())
        second.restore(saved)
        assert before + run(second, rows[cut:], until=30 * H) == expected, cut


def test_restored_active_alarm_is_not_raised_again_and_still_clears():
    engine = RuleEngine([rule("threshold", above=1.0)])
    run(engine, [(0, 2.0)])
    again = RuleEngine([rule("threshold", above=1.0)])
    again.restore(json.loads(json.dumps(engine.snapshot())))
    assert run(again, [(M, 3.0)]) == []
    assert run(again, [(2 * M, 0.5)]) == [("s/r", "cleared", 2 * M)]


def test_a_changed_rule_keeps_its_alarm_state_but_not_its_detector():
    old = RuleEngine([rule("threshold", above=1.0)])
    run(old, [(0, 2.0)])
    new = RuleEngine([rule("threshold", above=5.0)])
    new.restore(old.snapshot())
    assert run(new, [(M, 3.0)]) == [("s/r", "cleared", M)]
    with pytest.raises(RuleError):
        new.restore({"version": 99})
