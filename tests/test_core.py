"""The core thread: the outbox's only writer, judging readings, surviving bad records."""

from __future__ import annotations

import json
import math
import time

from buffer.outbox import Outbox, Priority
from drivers.base import Measurement
from edge import core as core_module
from edge.core import LEARNED_STATE, RULES_STATE, Core
from edge.model import reading_record
from edge.rules import RuleConfig, RuleEngine
from tests.mqtt_helpers import wait_until
from tests.outbox_helpers import raw_rows

STAMP = {"ts": 1_764_201_600_000, "synced": True, "boot": "b" * 32, "mono": 1000}


def reading(value, sensor="pump-pressure"):
    return reading_record(sensor, Measurement("pressure", value, "MPa"), STAMP)


class RaiseBelow:
    """A minimal real rule set: raise when pressure is below a floor (the rules engine plugs in the same way)."""

    def __init__(self, floor):
        self.floor = floor

    def evaluate(self, record):
        if record["value"] is not None and record["value"] < self.floor:
            return [{"kind": "alarm", "alarm": f"{record['sensor']}/low", "state": "raised", "severity": "critical",
                     "value": record["value"], "limit": self.floor, "ts": record["ts"], "message": "low"}]
        return []

    def tick(self, now_ms):
        return []

    def snapshot(self):
        return {"floor": self.floor}

    def learned(self):
        return {}

    def learning(self, now_ms):
        return []


def test_readings_wait_in_memory_and_the_acked_ones_never_reach_the_file(tmp_path):
    outbox = Outbox(tmp_path / "o.db", commit_interval=0.3)
    core = Core(outbox)
    core.start()
    try:
        for i in range(50):
            assert core.submit_reading(reading(0.3 + i / 1000))
        assert core.sync()
        rows = outbox.fetch({}, 100)
        assert [r.seq for r in rows] == list(range(1, 51))
        core.submit_acked([r.seq for r in rows[:20]])
        wait_until(lambda: outbox.stats()["depth"] == 30, 5, "20 acked records forgotten")
        # the other 30 are not acknowledged within commit_interval: spilled, in one chunk
        wait_until(lambda: sorted(raw_rows(tmp_path / "o.db")) == list(range(21, 51)), 5, "the rest spilled")
        assert outbox.stats()["pending"] == 0
    finally:
        core.stop()
        outbox.close()


def test_alarm_transitions_jump_the_queue_and_reach_the_alarm_sinks(tmp_path):
    outbox = Outbox(tmp_path / "o.db", commit_interval=60)   # readings alone would wait a minute
    sounded = []
    core = Core(outbox, rules=RaiseBelow(0.10), alarm_sinks=[sounded.append])
    core.start()
    try:
        core.submit_reading(reading(0.35))
        core.submit_reading(reading(0.08))
        # The first reading may be fetchable before the second is judged: wait for the alarm itself.
        wait_until(lambda: sounded and any(row.priority == Priority.ALARM for row in outbox.fetch({}, 10)), 5,
                   "the alarm committed at once")
        rows = outbox.fetch({}, 10)
        assert rows[0].priority == Priority.ALARM and rows[0].body["alarm"] == "pump-pressure/low"
        assert [s["value"] for s in sounded] == [0.08]
    finally:
        core.stop()
        outbox.close()


def test_a_broken_alarm_sink_does_not_stop_the_alarm(tmp_path):
    def broken_buzzer(_transition):
        raise OSError("GPIO busy")

    outbox = Outbox(tmp_path / "o.db")
    core = Core(outbox, rules=RaiseBelow(0.10), alarm_sinks=[broken_buzzer])
    core.start()
    try:
        core.submit_reading(reading(0.05))
        assert core.commit_now()
        assert any(r.priority == Priority.ALARM for r in outbox.fetch({}, 10))
        assert core.is_alive()
    finally:
        core.stop()
        outbox.close()


def test_a_record_the_outbox_refuses_is_counted_and_the_core_lives_on(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    core = Core(outbox)
    core.start()
    try:
        bad = reading(0.3)
        bad["value"] = math.nan          # what a buggy driver could hand over, bypassing reading_record
        core.submit_reading(bad)
        core.submit_reading(reading(0.31))
        assert core.commit_now()
        assert core.refused_records == 1
        assert [r.body["value"] for r in outbox.fetch({}, 10)] == [0.31]
        assert core.is_alive() and core.error is None
    finally:
        core.stop()
        outbox.close()


def test_a_non_finite_measurement_is_born_bad_not_as_a_number():
    record = reading_record("pump-pressure", Measurement("pressure", math.inf, "MPa"), STAMP)
    assert (record["value"], record["quality"], record["reason"]) == (None, "bad", "not_a_number")


def test_driver_state_is_persisted_with_its_reading(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    core = Core(outbox)
    core.start()
    try:
        core.submit_reading(reading(0.3, sensor="flat-302-water"), {"pulses": 1234})
        assert core.commit_now()
    finally:
        core.stop()
        outbox.close()
    with Outbox(tmp_path / "o.db") as reopened:
        assert reopened.get_state("driver/flat-302-water") == {"pulses": 1234}


def test_the_rules_state_goes_out_in_the_same_commit_as_the_alarm(tmp_path):
    # A crash right after an alarm was committed must not restore rules that never raised it.
    outbox = Outbox(tmp_path / "o.db", commit_interval=60)   # no group commit would save the state in time
    rules = RaiseBelow(0.10)
    core = Core(outbox, rules=rules)
    core.start()
    try:
        core.submit_reading(reading(0.08))
        wait_until(lambda: outbox.fetch({}, 10), 5, "the alarm committed at once")
        rules.floor = 0.2  # the state as it is after the alarm; it must not be what the commit carried
        with Outbox(tmp_path / "o.db") as second:   # what a restarted agent would read
            assert second.get_state(RULES_STATE) == {"floor": 0.10}
    finally:
        core.stop()
        outbox.close()


# --- what learning rules learned: offered hourly and at stop -------------------------------------------------
class CountedRules(RuleEngine):
    """A real engine with a routine rule on a water meter, noting when the core asks what it learned."""

    def __init__(self):
        super().__init__([RuleConfig("routine", "flat-302-water", "volume", "routine", params={
            "min_increase": 0.001, "quantile": 0.995, "stretch": 1.15, "slack": 3600.0, "min_silence": 10800.0,
            "max_silence": 72000.0, "warmup": 1209600.0, "warmup_window": 43200.0, "max_gap": 7200.0,
            "half_life": 5184000.0})])
        self.asked: list[float] = []

    def learned(self):
        self.asked.append(time.monotonic())
        return super().learned()


def water(core: Core, minutes: int) -> int:
    """A litre every ten minutes for ``minutes``, read every minute; the last reading's ts."""
    for minute in range(minutes + 1):
        ts = STAMP["ts"] + minute * 60_000
        core.submit_reading(reading_record("flat-302-water", Measurement("volume", 12.0 + minute // 10 / 1000, "m3"),
                                           {**STAMP, "ts": ts}))
    return ts


def test_what_the_rules_learned_waits_for_the_hour_or_the_stop(tmp_path):
    outbox = Outbox(tmp_path / "o.db", commit_interval=0.05, state_interval=0.05)
    rules = CountedRules()
    last = [STAMP["ts"]]
    core = Core(outbox, rules=rules, now_ms=lambda: last[0])
    core.start()
    try:
        last[0] = water(core, 120)
        assert core.sync() and core.commit_now()
        wait_until(lambda: outbox.get_state(RULES_STATE) is not None, 5, "the rules' state, offered every 50 ms")
        assert rules.asked == [] and outbox.get_state(LEARNED_STATE) is None, "not before the hour"
    finally:
        core.stop()
        outbox.close()
    assert len(rules.asked) == 1, "once, at the stop"
    with Outbox(tmp_path / "o.db") as reopened:
        saved = reopened.get_state(LEARNED_STATE)
    assert saved == json.loads(json.dumps(rules.learned()))
    assert saved["flat-302-water/routine"]["state"]["slots"], "eleven silences of ten minutes were learned"


def test_what_the_rules_learned_is_offered_at_most_once_an_interval(tmp_path, monkeypatch):
    monkeypatch.setattr(core_module, "LEARNED_INTERVAL", 0.3)
    outbox = Outbox(tmp_path / "o.db", commit_interval=0.05)
    rules = CountedRules()
    last = [STAMP["ts"]]
    core = Core(outbox, rules=rules, now_ms=lambda: last[0])
    started = time.monotonic()
    core.start()
    try:
        last[0] = water(core, 30)
        wait_until(lambda: len(rules.asked) >= 3, 10, "three offers")
        asked = list(rules.asked)
        assert core.commit_now()
        with Outbox(tmp_path / "o.db") as second:       # committed while the core runs, as a restart would read it
            assert second.get_state(LEARNED_STATE) == json.loads(json.dumps(RuleEngine.learned(rules)))
    finally:
        core.stop()
        outbox.close()
    assert asked[0] - started >= 0.3
    assert all(later - earlier >= 0.29 for earlier, later in zip(asked[:-1], asked[1:], strict=True))


def test_an_event_is_stored_at_status_priority_and_on_the_file_at_once(tmp_path):
    outbox = Outbox(tmp_path / "o.db", commit_interval=3600)   # nothing else would commit during the test
    core = Core(outbox)
    core.start()
    try:
        assert core.submit_reading(reading(0.3))
        event = {"kind": "event", "event": "away", "request_id": "r1", "via": "mqtt", "outcome": "applied",
                 "detail": "{}", "ts": STAMP["ts"]}
        assert core.submit_event(event)
        assert core.sync()
        assert raw_rows(tmp_path / "o.db")[2] == (Priority.STATUS, event)
        assert [(r.seq, r.priority) for r in outbox.fetch({}, 10)] == [(2, Priority.STATUS), (1, Priority.TELEMETRY)]
    finally:
        core.stop()
        outbox.close()
