"""The engine's timers when many rules share it: a street replays as its homes do alone, timers fire in time order.

The engine keeps its rules' timers in a heap (edge/rules/timers.py) instead of
scanning every rule on every reading; these tests hold it to what the scan did.
"""

from __future__ import annotations

import datetime
import random
import zoneinfo

import pytest

from edge.replay import replay
from edge.rules import RuleConfig, RuleEngine
from edge.rules.window import Calendar

MADRID = "Europe/Madrid"
H = 3_600_000
#: 2026-03-25 00:00 +01:00: the street's fortnight crosses the change to summer time on 2026-03-29.
T0 = 1_774_393_200_000


def home_rules(home: str, number: int) -> list[RuleConfig]:
    """Two to four counter rules per home, as a street's config has them."""
    rules = [
        RuleConfig("no-water", home, "volume", "inactivity", params={"window": 12 * 3600.0, "min_increase": 0.01}),
        RuleConfig("silent", home, "volume", "stale", params={"after": 2 * 3600.0}),
    ]
    if number % 2:
        rules.append(RuleConfig("over-200l", home, "volume", "daily_total", params={"above": 0.2, "for": 600.0}))
    if number % 3 == 0:
        rules.append(RuleConfig("leak", home, "volume", "continuous_use",
                                params={"bin": 3600.0, "window": 6 * 3600.0, "min_increase": 0.001}))
    return rules


def home_readings(home: str, number: int, hours: int) -> list[dict]:
    """An hour's reading of ``home``, ``number`` seconds past the hour, with the habits and mishaps of a home."""
    rng = random.Random(number)
    volume = 100.0 + number
    silent = range(rng.randrange(24, hours - 48), rng.randrange(24, hours - 48) + rng.randint(0, 30))
    away = range(150, 190) if number % 5 == 0 else range(0)
    leak = range(40, 60) if number % 3 == 0 else range(0)
    readings = []
    for hour in range(hours):
        if hour not in away and rng.random() < (0.6 if 7 <= (hour + 1) % 24 <= 22 else 0.05):
            volume += rng.uniform(0.005, 0.08)
        if hour in leak:
            volume += 0.002
        if hour not in silent:
            readings.append({"kind": "reading", "sensor": home, "quantity": "volume", "value": round(volume, 3),
                             "quality": "good", "ts": T0 + hour * H + number * 1000})
    return readings


def replayed(rules: list[RuleConfig], readings: list[dict]) -> list[tuple[str, str, int, object]]:
    engine = RuleEngine(rules, timezone=MADRID)
    return [(t["alarm"], t["state"], t["ts"], t["value"]) for t in replay(engine, readings)]


def test_a_street_replayed_at_once_gives_each_home_exactly_what_it_gives_alone():
    homes, hours = 40, 14 * 24
    names = [f"home-{number:02d}" for number in range(homes)]
    # Each home's first reading is in the street's first second, so "silent" counts from the same start either way.
    alone = {name: home_readings(name, number, hours) for number, name in enumerate(names)}
    street_rules = [rule for number, name in enumerate(names) for rule in home_rules(name, number)]
    street_rows = sorted((row for rows in alone.values() for row in rows), key=lambda row: row["ts"])

    street = replayed(street_rules, street_rows)

    assert [t[2] for t in street] == sorted(t[2] for t in street)
    kinds = set()
    for number, name in enumerate(names):
        expected = replayed(home_rules(name, number), alone[name])
        assert [t for t in street if t[0].startswith(name + "/")] == expected, name
        kinds |= {t[0].split("/")[1] for t in expected}
    assert kinds == {"no-water", "silent", "over-200l", "leak"}  # every rule kind of the street had its say


def reading(sensor: str, value: float, ts: int) -> dict:
    return {"kind": "reading", "sensor": sensor, "quantity": "level", "value": value, "quality": "good", "ts": ts}


@pytest.mark.parametrize("how", ["one tick", "a replay"])
def test_timers_of_several_rules_fire_in_time_order_across_rules_and_in_rule_order_when_due_together(how):
    m = 60_000
    rules = [  # in an order that is not the order of their timers
        RuleConfig("silent", "a", "level", "stale", params={"after": 30 * 60.0}),
        RuleConfig("high", "a", "level", "threshold", params={"above": 5.0, "for": 25 * 60.0, "clear_for": 40 * 60.0}),
        RuleConfig("silent", "b", "level", "stale", params={"after": 10 * 60.0}),
        RuleConfig("high", "c", "level", "threshold", params={"above": 5.0, "for": 20 * 60.0}),
        RuleConfig("high", "b", "level", "threshold", params={"above": 5.0, "for": 5 * 60.0}),
        RuleConfig("silent", "c", "level", "stale", params={"after": 20 * 60.0}),
    ]
    engine = RuleEngine(rules, timezone=MADRID)
    rows = [reading("a", 9.0, T0), reading("b", 9.0, T0), reading("c", 9.0, T0), reading("a", 1.0, T0 + 15 * m)]
    if how == "one tick":
        found = [t for row in rows for t in engine.evaluate(row)] + engine.tick(T0 + 2 * H)
    else:
        found = list(replay(engine, [*rows, reading("d", 0.0, T0 + 2 * H)]))
    assert [(t["alarm"], t["state"], (t["ts"] - T0) // m) for t in found] == [
        ("b/high", "raised", 5),
        ("b/silent", "raised", 10),
        ("c/high", "raised", 20),     # due with c/silent: the rule listed first fires first
        ("c/silent", "raised", 20),
        ("a/silent", "raised", 45),   # a's last reading came at 15 min, back below its limit before its 25 min delay
    ]
    assert engine.next_due() is None


def test_the_offset_of_a_zone_is_exact_on_every_minute_around_its_changes():
    for zone_name, changes in (("Europe/Madrid", ("2026-03-29T01:00:00+00:00", "2026-10-25T01:00:00+00:00")),
                               ("Australia/Lord_Howe", ("2026-04-04T15:00:00+00:00", "2026-10-03T15:30:00+00:00"))):
        zone = zoneinfo.ZoneInfo(zone_name)
        calendar = Calendar(zone)
        offsets = set()
        for change in changes:
            middle = int(datetime.datetime.fromisoformat(change).timestamp() * 1000)
            # Minutes and the milliseconds right at the change, in time order and then backwards, as the cache fills.
            times = [middle + minute * 60_000 + delta for minute in range(-150, 150) for delta in (-1, 0, 1)]
            for ts in times + times[::-1]:
                expected = datetime.datetime.fromtimestamp(ts / 1000, zone).utcoffset() // datetime.timedelta(
                    milliseconds=1)
                assert calendar.offset_ms(ts) == expected, (zone_name, ts)
                offsets.add(expected)
        assert len(offsets) == 2, zone_name  # both sides of each change were asked
