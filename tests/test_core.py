"""The core thread: the outbox's only writer, judging readings, surviving bad records."""

from __future__ import annotations

import math

from buffer.outbox import Outbox, Priority
from drivers.base import Measurement
from edge.core import RULES_STATE, Core
from edge.model import reading_record
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
        wait_until(lambda: outbox.fetch({}, 10), 5, "the alarm committed at once")
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
