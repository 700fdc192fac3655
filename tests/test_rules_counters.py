"""inactivity, continuous_use and daily_total on a cumulative meter, including resets and replacement."""

from __future__ import annotations

from edge.rules import RuleConfig, RuleEngine

T0 = 1767542400000          # 2026-01-05 00:00 +08:00 (Asia/Shanghai, no DST)
M = 60_000
H = 60 * M


def rule(kind: str, **params) -> RuleConfig:
    return RuleConfig("r", "m", "volume", kind, params=params)


def run(engine: RuleEngine, rows, until: int | None = None) -> list[tuple[str, int]]:
    found = []
    for offset, value in rows:
        found += engine.evaluate({"sensor": "m", "quantity": "volume", "value": value, "quality": "good",
                                  "ts": T0 + offset})
    if until is not None:
        found += engine.tick(T0 + until)
    return [(t["state"], t["ts"] - T0) for t in found]


# --- inactivity ------------------------------------------------------------------------------------------
def test_inactivity_raises_exactly_one_window_after_the_last_rise_and_clears_when_it_rises():
    engine = RuleEngine([rule("inactivity", min_increase=0.01, window=12 * 3600.0)])
    assert run(engine, [(0, 100.0), (1 * H, 100.01)], until=13 * H - 1) == []
    assert run(engine, [], until=13 * H) == [("raised", 13 * H)]
    assert run(engine, [(14 * H, 100.015), (15 * H, 100.02)]) == [("cleared", 15 * H)]


def test_inactivity_small_rises_add_up_and_a_rise_just_short_does_not_count():
    engine = RuleEngine([rule("inactivity", min_increase=0.01, window=3600.0)])
    assert run(engine, [(0, 5.0), (30 * M, 5.004), (59 * M, 5.0099)], until=60 * M) == [("raised", 60 * M)]


def test_inactivity_meter_replacement_is_no_use_and_keeps_counting_the_quiet_time():
    engine = RuleEngine([rule("inactivity", min_increase=0.01, window=3600.0)])
    # a new meter starting at 0.0: not negative use, not use either
    assert run(engine, [(0, 812.3), (20 * M, 0.0), (40 * M, 0.005)], until=60 * M) == [("raised", 60 * M)]
    assert run(engine, [(70 * M, 0.011)]) == [("cleared", 70 * M)]


# --- continuous_use --------------------------------------------------------------------------------------
def leak(engine, start: int, end: int, step: int = 15 * M, rate_per_step: float = 0.0015, base: float = 10.0):
    rows, value = [], base
    for offset in range(start, end, step):
        rows.append((offset + 5 * M, value))
        value += rate_per_step
    return rows


def test_continuous_use_raises_when_every_bin_of_the_window_is_wet():
    engine = RuleEngine([rule("continuous_use", bin=1800.0, window=4 * 3600.0, min_increase=0.001)])
    rows = leak(engine, 0, 6 * H)     # readings at :05 :20 :35 :50, rising every time
    # bin 00:00-00:30 turns wet at 00:20 (00:05 is the first reading); the 8th bin, 03:30-04:00, at 03:35
    assert run(engine, rows) == [("raised", 3 * H + 35 * M)]


def test_continuous_use_clears_at_the_end_of_the_first_dry_bin():
    engine = RuleEngine([rule("continuous_use", bin=1800.0, window=2 * 3600.0, min_increase=0.001)])
    rows = leak(engine, 0, 3 * H)
    last = rows[-1][1]
    assert run(engine, rows) == [("raised", 1 * H + 35 * M)]
    # no rise from 03:00 on: the bin 03:00-03:30 ends dry
    assert run(engine, [(3 * H + 5 * M, last), (3 * H + 20 * M, last)], until=4 * H) == [("cleared", 3 * H + 30 * M)]


def test_continuous_use_one_dry_bin_restarts_the_count():
    engine = RuleEngine([rule("continuous_use", bin=1800.0, window=2 * 3600.0, min_increase=0.001)])
    rows = leak(engine, 0, 90 * M)                  # bins 00:00, 00:30, 01:00 wet: one short of four
    last = rows[-1][1]
    rows += [(95 * M, last), (110 * M, last)]       # 01:30-02:00 dry
    rows += [(offset, last + 0.002 * n) for n, offset in enumerate(range(125 * M, 5 * H, 15 * M), 1)]
    # wet again from 02:00: the fourth wet bin in a row is 03:30-04:00, wet at 03:35
    assert run(engine, rows) == [("raised", 3 * H + 35 * M)]


# --- daily_total -----------------------------------------------------------------------------------------
def test_daily_total_more_than_the_limit_raises_and_clears_at_local_midnight():
    engine = RuleEngine([rule("daily_total", above=2.0)])
    found = run(engine, [(0, 100.0), (10 * H, 101.0), (11 * H, 102.0)])
    assert found == []                                  # exactly 2.0 is not more than 2.0
    transitions = engine.evaluate({"sensor": "m", "quantity": "volume", "value": 102.01, "quality": "good",
                                   "ts": T0 + 12 * H})
    assert [(t["state"], t["value"] > 2.0, t["limit"]) for t in transitions] == [("raised", True, 2.0)]
    assert run(engine, [], until=24 * H) == [("cleared", 24 * H)]   # 2026-01-06 00:00 +08:00


def test_daily_total_counts_per_local_day_not_per_utc_day():
    engine = RuleEngine([rule("daily_total", above=1.0)], timezone="Asia/Shanghai")
    # 07:00 and 09:00 local are on the same local day but on different UTC days (midnight UTC = 08:00 local)
    assert run(engine, [(7 * H, 0.0), (7 * H + 30 * M, 0.6), (9 * H, 1.2)]) == [("raised", 9 * H)]


def test_daily_total_rollover_is_not_negative_use():
    engine = RuleEngine([rule("daily_total", above=1.0)])
    assert run(engine, [(0, 99999.5), (1 * H, 0.2), (2 * H, 0.9)]) == []       # 0.0 + 0.7 after the reset
    assert run(engine, [(3 * H, 1.3)]) == [("raised", 3 * H)]                    # 1.1 in the day
