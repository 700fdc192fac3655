"""The ``routine`` rule on synthetic homes: what it learns, when it raises, and what it keeps across a restart.

Every home here is a water meter (m³, a running total) read into a real
:class:`~edge.rules.RuleEngine` with one ``routine`` rule validated from its config
table. Times are local to Asia/Shanghai (no daylight saving). The expected alarm
times are computed by a separate :class:`~edge.rules.routine_model.Routine` fed
the silences the trace was built with (slots worked out here, not by the rule),
and the night's is pinned to the figure derived beside ``NIGHT_ALLOWED_H``.
"""

from __future__ import annotations

import datetime
import json
import random
import zoneinfo

import pytest

from edge.config import validate
from edge.errors import ConfigError
from edge.rules import RuleEngine, RuleError
from edge.rules.routine_model import BINS, SLOTS, Routine

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
M = 60_000
H = 60 * M
DAY = 24 * H
T0 = 1767542400000          # 2026-01-05 00:00 +08:00, a Monday
ALARM = "meter/routine"

BASE = {
    "gateway": {"id": "gw-1", "grid": "b07"},
    "bus": [{"name": "gpio", "kind": "gpio", "pin_factory": "mock"}],
    "sensor": [{"id": "meter", "driver": "pulse_meter", "bus": "gpio", "pin": 17, "litres_per_pulse": 10.0}],
}
DEFAULTS = {"min_increase": 0.001, "quantile": 0.995, "stretch": 1.15, "slack": 3600.0, "min_silence": 10800.0,
            "max_silence": 72000.0, "warmup": 1209600.0, "warmup_window": 43200.0, "max_gap": 7200.0,
            "half_life": 2592000.0}


def table(**options) -> dict:
    return {"id": "routine", "sensor": "meter", "quantity": "volume", "kind": "routine", **options}


def routine_rules(*extra: dict, **options):
    return validate({**BASE, "rule": [table(**options), *extra]}).rules


def problems(**options) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate({**BASE, "rule": [table(**options)]})
    return caught.value.problems


def local(ts: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts / 1000, TZ)


def clock(ts: int) -> str:
    return local(ts).strftime("%H:%M")


def regular(ts: int) -> bool:
    """A home that uses water on the hour from 07:00 to 22:00 and is out 14:00-17:00 on Tue, Thu and Sat."""
    t = local(ts)
    out = t.weekday() in (1, 3, 5) and t.hour in (15, 16)
    return t.minute == 0 and 7 <= t.hour <= 22 and not out


def late_riser(ts: int) -> bool:
    """The same home once its nights end at 10:00 instead of 07:00."""
    t = local(ts)
    return t.minute == 0 and (t.hour == 22 or 10 <= t.hour < 22)


class Home:
    """One meter read into an engine; it also keeps the silences it made, for a model of its own to learn."""

    def __init__(self, engine: RuleEngine | None = None, **options):
        self.engine = engine or RuleEngine(routine_rules(**options))
        self.total = 1021.5
        self.found: list[dict] = []
        self.last_use: int | None = None
        self.silences: list[tuple[int, int]] = []      # (began, ended) of every finished silence under a day

    def read(self, ts: int, litres: float = 0.0) -> list[dict]:
        if litres:
            self.total = round(self.total + litres / 1000, 6)
        if self.last_use is None or litres:
            if self.last_use is not None and ts - self.last_use < DAY:
                self.silences.append((self.last_use, ts))
            self.last_use = ts
        found = self.engine.evaluate({"sensor": "meter", "quantity": "volume", "value": self.total,
                                      "quality": "good", "ts": ts})
        self.found += found
        return found

    def live(self, start: int, end: int, uses=regular, step: int = H, litres: float = 10.0) -> list[dict]:
        """Readings every ``step`` from ``start`` up to (not including) ``end``; a use where ``uses(ts)``."""
        found = []
        for ts in range(start, end, step):
            found += self.read(ts, litres if uses(ts) else 0.0)
        return found

    def tick(self, ts: int) -> list[dict]:
        found = self.engine.tick(ts)
        self.found += found
        return found

    def explain(self, now: int) -> dict:
        return self.engine.explain(ALARM, now)

    def allowed(self, since: int, stretch: float = 1.15, silences=None) -> int:
        """How long a silence from ``since`` may last, from a model of our own fed this home's silences."""
        model = Routine(half_life_ms=30 * DAY, quantile=0.995)
        for began, ended in self.silences if silences is None else silences:
            model.learn(slot(began), ended - began, ended)
        usual = model.usual_longest(slot(since), since)
        return int(min(max(usual * stretch + H, 3 * H), 20 * H))


def slot(ts: int) -> int:
    """The routine's slot of a silence beginning at ``ts``: weekend when six hours later is a Saturday or Sunday."""
    return local(ts).hour + (24 if local(ts + 6 * H).weekday() >= 5 else 0)


def states(found: list[dict]) -> list[tuple[str, int]]:
    return [(t["state"], t["ts"]) for t in found if t["alarm"] == ALARM]


def learned_home(days: int = 30, **options) -> Home:
    """``days`` of the regular home from T0, readings on the hour: the warm-up and then some."""
    home = Home(**options)
    home.live(T0, T0 + days * DAY)
    return home


#: 8 h × 2^((1 − 0.005 × 11/6) / 4) × 1.15 + 1 h. The 22:00 silences (9 h) fall in the bin 8 h–9.51 h; the
#: pooled hours 21:00 and 20:00 (weights 1/2 and 1/3) add 5/6 as many 1 h silences, so the 0.995 quantile lies
#: 0.005 × 11/6 of a bin below the top of it (on the bin's logarithmic scale).
NIGHT_ALLOWED_H = 11.923


# --- the config ----------------------------------------------------------------------------------------
def test_the_four_common_keys_are_enough_every_option_has_its_default_and_the_rule_runs():
    (rule,) = routine_rules()
    assert rule.params == DEFAULTS
    engine = RuleEngine([rule])
    assert engine.evaluate({"sensor": "meter", "quantity": "volume", "value": 3.0, "quality": "good",
                            "ts": T0}) == []
    assert engine.next_due() == T0 + 3 * H, "nothing is judged before min_silence"
    assert engine.learning(T0) == [{"alarm": ALARM, "warmup_until": T0 + 14 * DAY}]


@pytest.mark.parametrize(("options", "problem"), [
    ({"quantile": 1.0}, "rule[0].quantile: must be at least 0.5 and below 1, got 1"),
    ({"quantile": 0.4}, "rule[0].quantile: must be at least 0.5 and below 1, got 0.4"),
    ({"min_silence": "21h"}, "rule[0].min_silence: must not be above rule[0].max_silence (20h), got 21h"),
    ({"min_silence": "8h", "max_silence": "4h"},
     "rule[0].min_silence: must not be above rule[0].max_silence (4h), got 8h"),
    ({"strech": 1.2}, 'rule[0].strech: unknown key; did you mean "stretch"?'),
    ({"stretch": 0.9}, "rule[0].stretch: must be at least 1, got 0.9"),
    ({"slack": "2d"}, 'rule[0].slack: must be at most 86400s, got "2d"'),
    ({"min_increase": 0}, "rule[0].min_increase: must be greater than 0, got 0"),
    ({"max_gap": "0s"}, 'rule[0].max_gap: must be at least 1s, got "0s"'),
    ({"half_life": "12h"}, 'rule[0].half_life: must be at least 86400s, got "12h"'),
    ({"warmup_window": "8d"}, 'rule[0].warmup_window: must be at most 604800s, got "8d"'),
    ({"warmup": "-1h"}, 'rule[0].warmup: expected a duration like "30s" or "5m", got "-1h"'),
])
def test_every_option_is_checked_and_named_by_its_key_path(options, problem):
    assert problems(**options) == [problem]


# --- the warm-up ---------------------------------------------------------------------------------------
def test_during_the_warmup_a_silence_raises_exactly_twelve_hours_after_the_last_use():
    home = Home()
    home.live(T0, T0 + 23 * H)                          # the first reading at 00:00, the last use at 22:00
    assert home.found == []
    since = T0 + 22 * H
    assert home.live(T0 + 23 * H, since + 12 * H, uses=lambda ts: False) == []
    assert home.tick(since + 12 * H - 1) == []
    (raised,) = home.tick(since + 12 * H)
    assert (raised["state"], raised["ts"], raised["value"], raised["limit"]) == ("raised", since + 12 * H, 12.0, 12.0)
    assert raised["message"] == "meter: no water since 22:00, 12h without use (still learning this home's routine)"
    assert raised["message_zh"] == "meter：自 22:00 起没有用水，已 12h（仍在学习此户的作息）"
    assert states(home.read(since + 14 * H, litres=10)) == [("cleared", since + 14 * H)]


def test_learning_reports_the_end_of_the_warmup_from_the_first_reading_then_none():
    home = Home()
    assert home.engine.learning(T0 - H) == [{"alarm": ALARM, "warmup_until": T0 - H + 14 * DAY}], \
        "before any reading the warm-up has not begun"
    home.read(T0 + 5 * H)
    home.live(T0 + 6 * H, T0 + 3 * DAY)
    assert home.engine.learning(T0 + 3 * DAY) == [{"alarm": ALARM, "warmup_until": T0 + 5 * H + 14 * DAY}]
    assert home.engine.learning(T0 + 5 * H + 14 * DAY - 1)[0]["warmup_until"] == T0 + 5 * H + 14 * DAY
    assert home.engine.learning(T0 + 5 * H + 14 * DAY) == [{"alarm": ALARM, "warmup_until": None}]


def test_the_last_night_of_the_warmup_keeps_the_fixed_rule_the_first_one_after_it_the_routine():
    home = learned_home(days=13)
    since = T0 + 13 * DAY + 22 * H                     # 2 h before the warm-up ends
    home.live(T0 + 13 * DAY, since + H)
    home.live(since + H, since + 25 * H, uses=lambda ts: False)  # a day and more: not learned
    assert states(home.found) == [("raised", since + 12 * H)]
    home.live(since + 25 * H, T0 + 15 * DAY)
    since = T0 + 15 * DAY + 22 * H
    home.live(T0 + 15 * DAY, since + H)
    home.live(since + H, since + 13 * H, uses=lambda ts: False)
    assert states(home.found)[-1] == ("raised", since + home.allowed(since))
    assert home.allowed(since) < 12 * H


# --- the learned routine -------------------------------------------------------------------------------
def test_a_month_of_the_usual_raises_nothing():
    home = learned_home(days=30)
    assert home.found == []
    assert home.engine.learning(T0 + 30 * DAY) == [{"alarm": ALARM, "warmup_until": None}]


def test_a_night_without_water_raises_when_this_homes_routine_says_not_after_twelve_hours():
    home = learned_home()
    since = T0 + 30 * DAY + 22 * H                     # Wednesday 2026-02-04 22:00
    home.live(T0 + 30 * DAY, since + H)
    allowed = home.allowed(since)
    assert allowed / H == pytest.approx(NIGHT_ALLOWED_H, abs=0.01)
    assert home.live(since + H, since + allowed, uses=lambda ts: False) == []
    assert home.tick(since + allowed - 1) == []
    (raised,) = home.tick(since + allowed)
    assert (raised["state"], raised["ts"]) == ("raised", since + allowed)
    assert clock(raised["ts"]) == "09:55"
    assert (raised["value"], raised["limit"]) == (round(allowed / H, 2), round(allowed / H, 2)) == (11.92, 11.92)
    usual_by = home.explain(since + allowed)["silence"]["usual_by"]
    assert clock(usual_by) == "07:29"           # 22:00 + 9.50 h, the 0.995 quantile of this home's nights
    assert raised["message"] == "meter: no water since 22:00; this home almost always uses water by 07:29"
    assert raised["message_zh"] == "meter：自 22:00 起没有用水；此户几乎总在 07:29 之前用水"


def test_an_afternoon_out_as_usual_raises_nothing_a_much_longer_one_raises_by_the_afternoons_routine():
    home = learned_home()                               # out 14:00-17:00 three days a week
    wednesday = T0 + 30 * DAY
    out_as_usual = {wednesday + 15 * H, wednesday + 16 * H}
    assert home.live(wednesday, wednesday + DAY, uses=lambda ts: regular(ts) and ts not in out_as_usual) == []
    thursday = wednesday + DAY
    since = thursday + 14 * H
    home.live(thursday, since + H)
    allowed = home.allowed(since)
    assert 4 * H < allowed < 5 * H, "a 3 h afternoon stretched by 1.15 plus an hour"
    assert states(home.live(since + H, since + 9 * H, uses=lambda ts: False)) == [("raised", since + allowed)]


def test_a_morning_silence_where_the_home_is_never_out_raises_at_min_silence():
    home = learned_home()
    since = T0 + 30 * DAY + 9 * H
    home.live(T0 + 30 * DAY, since + H)
    assert home.allowed(since) == 3 * H, "the usual 1 h × 1.15 + 1 h is below the 3 h floor"
    assert home.live(since + H, since + 3 * H, uses=lambda ts: False) == []
    assert home.tick(since + 3 * H - 1) == []
    assert states(home.tick(since + 3 * H)) == [("raised", since + 3 * H)]


# --- one alarm per silence -----------------------------------------------------------------------------
def test_one_alarm_per_silence_however_long_cleared_by_the_next_use_and_raised_again_by_the_next_silence():
    home = learned_home()
    since = T0 + 30 * DAY + 22 * H
    home.live(T0 + 30 * DAY, since + H)
    allowed = home.allowed(since)
    home.live(since + H, since + 3 * DAY, uses=lambda ts: False)     # far past max_silence: still one alarm
    assert states(home.found) == [("raised", since + allowed)]
    back = since + 3 * DAY
    assert states(home.read(back, litres=10)) == [("cleared", back)]
    assert local(back).hour == 22
    home.live(back + H, back + 2 * DAY, uses=lambda ts: False)
    assert states(home.found) == [("raised", since + allowed), ("cleared", back),
                                  ("raised", back + home.allowed(back))]


# --- away ----------------------------------------------------------------------------------------------
def test_nothing_is_raised_while_away_and_the_silence_counts_from_the_return():
    home = learned_home(suppress_when_away=True)
    since = T0 + 30 * DAY + 22 * H
    home.live(T0 + 30 * DAY, since + H)
    leaves, returns = since + 30 * M, since + 44 * H  # away for longer than max_silence (20 h)
    home.found += home.engine.set_away(returns, leaves)
    home.live(since + H, returns + 12 * H, uses=lambda ts: False)
    after_return = home.allowed(returns)
    assert [(t["alarm"], t["state"], t["ts"]) for t in home.found] == [
        ("gateway/away", "raised", leaves), ("gateway/away", "cleared", returns),
        (ALARM, "raised", returns + after_return)]
    assert local(returns).hour == 18 and after_return == 3 * H


def test_a_silence_begun_when_away_is_switched_on_counts_from_an_early_return():
    home = learned_home(suppress_when_away=True)
    day = T0 + 30 * DAY
    home.live(day, day + 11 * H)
    since = day + 10 * H
    home.found += home.engine.set_away(day + 5 * DAY, since)       # the last use and away at the same moment
    home.live(day + 11 * H, day + 14 * H, uses=lambda ts: False)
    returns = day + 14 * H + 20 * M
    home.found += home.engine.set_away(None, returns)
    home.live(day + 15 * H, day + 20 * H, uses=lambda ts: False)
    home.tick(day + 20 * H)
    assert [(t["alarm"], t["state"], t["ts"]) for t in home.found] == [
        ("gateway/away", "raised", since), ("gateway/away", "cleared", returns),
        (ALARM, "raised", returns + home.allowed(returns))]


def test_a_silence_spanning_an_absence_is_not_learned():
    home = learned_home(suppress_when_away=True)
    day = T0 + 30 * DAY
    home.live(day, day + 23 * H)
    home.engine.set_away(day + DAY + 18 * H, day + 22 * H + 30 * M)
    home.live(day + 23 * H, day + DAY + 19 * H, uses=lambda ts: False)
    before = home.engine.learned()
    home.read(day + DAY + 19 * H, litres=10)          # the first use after the return: the silence is not learned
    assert home.engine.learned() == before
    home.read(day + DAY + 20 * H, litres=10)          # the next one is
    assert home.engine.learned() != before


# --- meters --------------------------------------------------------------------------------------------
def test_a_meter_reset_is_no_use_and_does_not_break_the_silence():
    home = Home()
    home.live(T0, T0 + 23 * H)
    since = T0 + 22 * H
    home.read(since + 3 * H)
    home.total = 0.0                                   # a new meter
    home.live(since + 4 * H, since + 14 * H, uses=lambda ts: False)
    assert states(home.found) == [("raised", since + 12 * H)]
    assert home.found[0]["message"].startswith("meter: no water since 22:00, 12h")
    assert states(home.read(since + 14 * H, litres=1)) == [("cleared", since + 14 * H)]


def test_rises_smaller_than_a_use_add_up_to_one():
    home = Home()
    home.live(T0, T0 + 24 * H, uses=lambda ts: ts in (T0 + 3 * H, T0 + 6 * H, T0 + 9 * H, T0 + 12 * H),
              litres=0.4)                              # 0.4 L a time: at 09:00 1.2 L have run, then 0.4 L
    assert states(home.found) == [("raised", T0 + 9 * H + 12 * H)]


def test_every_ten_litre_pulse_is_a_use():
    home = Home()
    steps = [T0 + n * (12 * H - M) for n in range(6)]  # a pulse every 11 h 59 min: never 12 h without use
    home.live(T0, steps[-1] + 13 * H, uses=lambda ts: ts in steps, step=M)
    assert states(home.found) == [("raised", steps[-1] + 12 * H)]
    assert len(home.silences) == 5


@pytest.mark.parametrize("step", [15_000, H])
def test_readings_every_fifteen_seconds_or_every_hour_raise_at_the_same_moment(step):
    home = learned_home()
    since = T0 + 30 * DAY + 22 * H
    home.live(T0 + 30 * DAY, since + H)
    allowed = home.allowed(since)
    home.live(since + H, since + 13 * H, uses=lambda ts: False, step=step)
    assert states(home.found) == [("raised", since + allowed)]


def test_fifteen_second_readings_of_a_pulse_meter_learn_the_same_as_hourly_ones():
    quick, hourly = Home(), Home()
    for home, step in ((quick, 15_000), (hourly, H)):
        home.live(T0, T0 + 6 * H, step=step, uses=lambda ts: ts % H == 0)
    assert quick.engine.learned() == hourly.engine.learned()
    assert quick.engine.learned()[ALARM]["state"]["slots"] != {}


# --- gaps in the readings ------------------------------------------------------------------------------
def test_a_gap_past_the_allowed_time_raises_nothing_until_a_reading_confirms_the_silence():
    home = learned_home()
    since = T0 + 30 * DAY + 22 * H
    home.live(T0 + 30 * DAY, since + H)
    allowed = home.allowed(since)
    home.live(since + H, since + 5 * H, uses=lambda ts: False)     # then nothing from 03:00 to 13:00
    assert home.tick(since + 15 * H - 1) == []
    explained = home.explain(since + 15 * H - 1)["silence"]
    assert (explained["alarm_at"], explained["waiting_for_reading"], explained["raised"]) == (
        since + allowed, True, False)
    (raised,) = home.read(since + 15 * H)
    assert (raised["state"], raised["ts"], raised["value"]) == ("raised", since + 15 * H, 15.0)


def test_a_use_after_the_gap_raises_nothing_and_teaches_nothing():
    home = learned_home()
    since = T0 + 30 * DAY + 22 * H
    home.live(T0 + 30 * DAY, since + H)
    home.live(since + H, since + 5 * H, uses=lambda ts: False)
    before = home.engine.learned()
    assert home.read(since + 15 * H, litres=10) == []
    assert home.engine.learned() == before
    assert home.tick(since + 15 * H + 3 * H - 1) == [], "a new silence, counted from that use"


def test_a_daytime_silence_with_a_gap_in_it_is_not_learned():
    home = learned_home()
    day = T0 + 30 * DAY
    home.live(day, day + 10 * H)
    before = home.engine.learned()
    home.read(day + 12 * H + 30 * M, litres=10)       # 2 h 30 min without a reading, then a use
    assert home.engine.learned() == before
    home.read(day + 13 * H, litres=10)
    assert home.engine.learned() != before, "the next silence, read all along, is learned"


# --- forgetting and memory -----------------------------------------------------------------------------
def test_after_a_changed_routine_the_expected_time_follows_the_new_one():
    home = Home()
    home.live(T0, T0 + 60 * DAY)
    since_a = T0 + 60 * DAY - 2 * H
    assert clock(home.explain(since_a + H)["silence"]["usual_by"]) == "07:29"
    home.live(T0 + 60 * DAY, T0 + 120 * DAY, uses=late_riser)
    since = T0 + 120 * DAY - 2 * H
    usual_by = home.explain(since + H)["silence"]["usual_by"]
    assert "10:00" < clock(usual_by) < "11:30", "the 0.995 quantile of nights ending at 10:00 (12 h)"
    assert usual_by - since == pytest.approx(home.allowed(since, stretch=1) - H, abs=1)


def test_a_silence_counts_half_as_much_after_a_half_life():
    model = Routine(half_life_ms=60 * DAY, quantile=0.995)
    for _night in range(10):
        model.learn(22, 9 * H, T0)
    assert model.known(22, T0) == 10
    assert model.known(22, T0 + 60 * DAY) == pytest.approx(5)
    assert model.usual_longest(22, T0 + 60 * DAY) is not None
    assert model.usual_longest(22, T0 + 61 * DAY) is None, "4.9 silences are not enough to go by"


def test_a_year_of_quarter_hour_readings_stays_within_48_by_32_numbers_and_16_kb():
    chance = random.Random(5)
    home = Home()
    for ts in range(T0, T0 + 365 * DAY, 15 * M):
        hour = local(ts).hour
        home.read(ts, litres=10 if chance.random() < (0.03 if hour < 6 else 0.3) else 0)
    state = home.engine.learned()[ALARM]["state"]
    numbers = sum(len(row) for row in state["slots"].values())
    assert len(state["slots"]) <= SLOTS and all(len(row) <= BINS for row in state["slots"].values())
    assert 200 < numbers <= SLOTS * BINS, "the random home fills many bins"
    assert len(json.dumps(home.engine.learned())) < 16_000


def test_weights_scaled_back_after_forty_half_lives_judge_as_before():
    home = learned_home(days=170, half_life="4d", warmup="1d")
    since = T0 + 170 * DAY + 22 * H
    home.live(T0 + 170 * DAY, since + H)
    reference = home.engine.learned()[ALARM]["state"]["reference"]
    assert reference > T0 + 160 * DAY, "the weights were scaled back once the newest weighed 2 ** 40"
    model = Routine(half_life_ms=4 * DAY, quantile=0.995)
    for began, ended in home.silences:
        model.learn(slot(began), ended - began, ended)
    home.live(since + H, since + 13 * H, uses=lambda ts: False)
    usual = model.usual_longest(slot(since), since)
    assert states(home.found) == [("raised", since + int(max(usual * 1.15 + H, 3 * H)))]


# --- persistence ---------------------------------------------------------------------------------------
def restarted(home: Home, **options) -> Home:
    """A fresh engine from the JSON of ``home``'s snapshot and learned state, as after a reboot."""
    snapshot, learned = json.loads(json.dumps(home.engine.snapshot())), json.loads(json.dumps(home.engine.learned()))
    again = Home(**options)
    again.engine.restore(snapshot)
    again.engine.restore_learned(learned)
    again.total, again.last_use, again.silences = home.total, home.last_use, list(home.silences)
    return again


def roughly(explained: dict) -> dict:
    """``explain()`` with its times to the second: the learned state keeps six significant digits, which may
    move a time computed from it by a millisecond or so."""
    silence = explained["silence"]
    return {**explained, "silence": {**silence, **{key: None if silence[key] is None else round(silence[key], -3)
                                                   for key in ("usual_by", "alarm_at")}}}


@pytest.mark.parametrize("stop", [23 * H, DAY + 2 * H], ids=["before the silence is judged", "after"])
def test_a_restart_from_json_explains_the_same_and_raises_the_same(stop):
    home = learned_home()
    day = T0 + 30 * DAY
    home.live(day, day + stop)
    again = restarted(home)
    assert roughly(again.explain(day + stop)) == roughly(home.explain(day + stop))
    for each in (home, again):
        each.live(day + stop, day + DAY + 13 * H, uses=lambda ts: regular(ts) and not 7 <= local(ts).hour < 12)
        each.live(day + DAY + 13 * H, day + 4 * DAY)
        each.live(day + 4 * DAY, day + 5 * DAY, uses=lambda ts: regular(ts) and local(ts).hour < 15)
    found, again_found = states(home.found), states(again.found)
    assert [state for state, _ in found] == [state for state, _ in again_found] == ["raised", "cleared", "raised"]
    assert [ts for _, ts in again_found] == pytest.approx([ts for _, ts in found], abs=2)
    assert roughly(again.explain(day + 5 * DAY)) == roughly(home.explain(day + 5 * DAY))


def test_changing_stretch_keeps_the_learned_routine_and_its_warmup_is_over():
    home = learned_home()
    day = T0 + 30 * DAY
    home.live(day, day + 22 * H)
    again = restarted(home, stretch=1.5)               # a new rule's detector: its silence begins at 22:00
    assert again.engine.learned()[ALARM] == json.loads(json.dumps(home.engine.learned()[ALARM]))
    assert again.engine.learning(day + 22 * H) == [{"alarm": ALARM, "warmup_until": None}]
    since = day + 22 * H
    again.last_use = None                              # the new detector's first reading learns nothing
    again.read(since, litres=10)
    again.live(since + H, since + 16 * H, uses=lambda ts: False)
    again.tick(since + 16 * H)
    allowed = again.allowed(since, stretch=1.5)
    assert allowed / H == pytest.approx((NIGHT_ALLOWED_H - 1) / 1.15 * 1.5 + 1, abs=0.01)
    assert states(again.found) == [("raised", since + allowed)]


def test_changing_min_increase_starts_the_learning_afresh():
    home = learned_home()
    day = T0 + 30 * DAY
    home.live(day, day + 23 * H)
    again = restarted(home, min_increase=0.005)
    assert again.engine.learned()[ALARM]["state"] == {"reference": None, "slots": {}, "first_ts": None}
    assert again.engine.learned()[ALARM]["key"] != home.engine.learned()[ALARM]["key"]
    again.live(day + 23 * H, day + 23 * H + 13 * H, uses=lambda ts: False)
    assert states(again.found) == [("raised", day + 23 * H + 12 * H)], \
        "the fixed rule, counted from the first reading of the new rule"


@pytest.mark.parametrize("damage", [
    {"reference": 0},
    {"reference": 0, "slots": {"48": {"0": 1.0}}},
    {"reference": 0, "slots": {"3": {"32": 1.0}}},
    {"reference": 0, "slots": {"3": {"x": 1.0}}},
    {"reference": 0, "slots": {"3": {"1": -1.0}}},
    {"reference": 0, "slots": {"3": {"1": "many"}}},
    {"reference": "yesterday", "slots": {}},
    {"reference": 0, "slots": {}, "first_ts": "monday"},
    [],
])
def test_a_damaged_learned_state_is_a_rule_error_naming_the_alarm(damage):
    home = learned_home(days=2)
    learned = home.engine.learned()
    key = learned[ALARM]["key"]
    with pytest.raises(RuleError, match=f"the learned routine of {ALARM} is damaged"):
        home.engine.restore_learned({ALARM: {"key": key, "state": damage}})
    assert home.engine.learned() == learned, "a damaged state changes nothing"


# --- explain -------------------------------------------------------------------------------------------
def test_explain_tells_per_hour_what_was_learned_and_where_the_silence_stands():
    home = learned_home()
    since = T0 + 30 * DAY + 22 * H
    home.live(T0 + 30 * DAY, since + H)
    allowed = home.allowed(since)
    explained = home.explain(since + 11 * H)
    assert (explained["alarm"], explained["kind"], explained["now"], explained["warmup_until"]) == (
        ALARM, "routine", since + 11 * H, None)
    assert [row["hour"] for row in explained["hours"]] == list(range(24))
    night = explained["hours"][22]["weekday"]
    assert set(night) == {"silences", "median_h", "usual_longest_h", "alarm_after_h", "longer_share"}
    assert night["usual_longest_h"] == 9.5 and night["alarm_after_h"] == round(allowed / H, 2) == 11.92
    assert night["longer_share"] == 0.0, "no night lasted past the alarm"
    assert 8 < night["median_h"] < 9.51
    assert explained["hours"][22]["weekend"]["usual_longest_h"] == 9.5
    quiet = explained["hours"][3]["weekday"]
    assert (quiet["silences"], quiet["usual_longest_h"], quiet["alarm_after_h"]) == (0.0, None, 12.0), \
        "no silence begins near 03:00: the fixed rule there"
    morning = explained["hours"][9]["weekday"]
    assert morning["median_h"] == pytest.approx(1.0, abs=0.1) and morning["alarm_after_h"] == 3.0
    assert explained["silence"] == {"since": since, "hours": 11.0, "usual_by": explained["silence"]["usual_by"],
                                    "alarm_at": since + allowed, "raised": False, "waiting_for_reading": False}
    assert clock(explained["silence"]["usual_by"]) == "07:29"


def test_explain_during_the_warmup_and_for_what_is_no_learning_rule():
    threshold = {"id": "burst", "sensor": "meter", "quantity": "volume", "kind": "threshold", "above": 5000}
    home = Home(RuleEngine(routine_rules(threshold)))
    home.live(T0, T0 + 23 * H)
    explained = home.explain(T0 + 23 * H)
    assert explained["warmup_until"] == T0 + 14 * DAY
    assert explained["silence"]["alarm_at"] == T0 + 22 * H + 12 * H and explained["silence"]["usual_by"] is None
    assert {row["weekday"]["alarm_after_h"] for row in explained["hours"]} == {12.0}
    with pytest.raises(RuleError, match="meter/burst is a rule of kind threshold, which learns nothing; rules that "
                                        "learn: meter/routine"):
        home.engine.explain("meter/burst", T0)
    with pytest.raises(RuleError, match="no rule makes the alarm 'meter/nap'"):
        home.engine.explain("meter/nap", T0)
