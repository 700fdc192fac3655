"""bed_pad on gpiozero's MockFactory: lying down, turning over (not leaving), leaving after hold, a night."""

from __future__ import annotations

import doctest
import threading
import time
import tomllib
from pathlib import Path

import pytest

import drivers.bed_pad
from drivers.base import Measurement
from drivers.bed_pad import BedPad
from drivers.contact.watch import StableLevel
from drivers.errors import TransportError
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.gpio import GpioBus
from edge.config import validate
from edge.sampler import BusWorker, SensorSlot
from edge.simulate.contacts import ContactSim
from tests.mqtt_helpers import wait_until

PIN = 22
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bus():
    with GpioBus("pins", {"pin_factory": "mock"}) as gpio:
        yield gpio


def bed_pad(bus, sensor_id: str = "room-12-bed", **options) -> BedPad:
    raw = {"pin": PIN, "report_every": "1h", **options}
    values, problems = validate_options(BedPad.options, raw)
    assert problems == []
    assert BedPad.check_options(values) == []
    return BedPad(sensor_id, values, bus)


def presence(measurements: list[Measurement]) -> list[bool]:
    assert {m.quantity for m in measurements} <= {"presence"}
    return [m.value for m in measurements]


def test_registry_names_this_class():
    assert driver_class("bed_pad") is BedPad
    assert (BedPad.bus_kind, BedPad.quantities_for({})) == ("gpio", ("presence",))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, [("pin", "is required")]),
        ({"pin": 22, "hold": "11m"}, [("hold", 'must be at most 600s, got "11m"')]),
        ({"pin": 22, "hold": 10}, [("hold", 'expected a duration like "30s" or "5m", got 10')]),
        ({"pin": 22, "quantity": "presence"}, [("quantity", "unknown key")]),
    ],
)
def test_option_problems(raw, expected):
    assert validate_options(BedPad.options, raw)[1] == expected


def test_defaults():
    assert validate_options(BedPad.options, {"pin": 22}) == (
        {"pin": 22, "hold": 10.0, "debounce": 0.5, "pull": "up", "active_high": None, "report_every": 60.0}, [])
    values, _ = validate_options(BedPad.options, {"pin": 22, "pull": "none"})
    assert BedPad.check_options(values) == [
        ("active_high", 'is required with pull = "none": true when the pin is high means on, false when low does')]


def test_hold_on_explicit_times():
    pad = StableLevel(True, rise=0.5, fall=10.0)
    pad.edge(0.0, False)      # turns over: the pad opens for 9.9 s
    pad.edge(9.9, True)
    assert pad.settle(100.0) is True
    pad.edge(200.0, False)    # gets up
    assert pad.settle(209.999) is True
    assert pad.settle(210.0) is False
    pad.edge(500.0, True)     # sits down for 0.4 s: not in bed
    pad.edge(500.4, False)
    pad.edge(600.0, True)     # lies down
    assert pad.settle(600.5) is True
    assert pad.take_changes() == [(200.0, False), (600.0, True)]


def test_lying_down_and_getting_up(bus):
    with bed_pad(bus, hold="0ms", debounce="0ms") as bed:
        pin = bus.factory.pin(PIN)
        assert presence(bed.read()) == [False]  # an empty bed: the pad is open, the pull-up holds the pin high
        pin.drive_low()                          # lies down: the pad closes to ground
        assert presence(bed.read()) == [True]
        pin.drive_high()
        assert presence(bed.read()) == [False]
        assert bed.read() == []


def test_turning_over_is_not_leaving_the_bed(bus):
    with bed_pad(bus, hold="10m", debounce="0ms") as bed:
        with ContactSim(bus.factory, PIN, bounce=4) as pad:
            pad.set(closed=True)
            assert presence(bed.read()) == [True]
            for _ in range(20):  # a restless night
                pad.set(closed=False)
                pad.set(closed=True)
            assert bed.read() == []
            pad.set(closed=False)
            assert bed.read() == []  # out of bed, but not for ten minutes yet


def test_presence_goes_false_once_the_pad_has_stayed_open_for_hold(bus):
    hold = 0.3
    with bed_pad(bus, hold="300ms", debounce="0ms") as bed:
        with ContactSim(bus.factory, PIN, bounce=3) as pad:
            pad.set(closed=True)
            assert presence(bed.read()) == [True]
            left_at = time.monotonic()
            pad.set(closed=False)
            published = wait_until(bed.read, 10, "presence false")
            assert time.monotonic() - left_at >= hold  # never before the hold time has passed
            assert presence(published) == [False]


def test_a_bump_shorter_than_debounce_is_not_someone_lying_down(bus):
    with bed_pad(bus, debounce="1m") as bed:
        pin = bus.factory.pin(PIN)
        assert presence(bed.read()) == [False]
        pin.drive_low()
        pin.drive_high()
        pin.drive_low()
        assert bed.read() == []


def test_lying_down_counts_once_the_pad_stayed_closed_for_debounce(bus):
    with bed_pad(bus, debounce="200ms") as bed:
        assert presence(bed.read()) == [False]
        closed_at = time.monotonic()
        bus.factory.pin(PIN).drive_low()
        published = wait_until(bed.read, 10, "presence true")
        assert time.monotonic() - closed_at >= 0.2
        assert presence(published) == [True]


def test_a_pad_that_opens_under_weight(bus):
    # Some pads are normally closed and open when someone lies on them: active_high says "high means someone".
    with bed_pad(bus, hold="0ms", debounce="0ms", active_high=True) as bed:
        pin = bus.factory.pin(PIN)
        pin.drive_low()
        assert presence(bed.read()) == [False]
        pin.drive_high()
        assert presence(bed.read()) == [True]


def test_pin_taken_by_another_sensor(bus):
    with bed_pad(bus, sensor_id="a"), pytest.raises(TransportError) as err:
        bed_pad(bus, sensor_id="b").open()
    assert str(err.value).startswith("GPIO22 cannot be used for sensor b: ")


def test_a_night_through_the_sampler():
    gpio = GpioBus("pins", {"pin_factory": "mock"})
    bed = bed_pad(gpio, hold="300ms", debounce="50ms")
    records: list[dict] = []
    lock = threading.Lock()

    def emit(record, _state):
        with lock:
            records.append(record)

    worker = BusWorker(gpio, [SensorSlot(bed.sensor_id, bed, 0.1)], emit, lambda: {"ts": 0})
    worker.start()
    try:
        wait_until(lambda: worker.slots[0].opened, 10, "the pad opened")
        # Lies down, turns over twice (pad open 50 ms, far under hold), goes to the toilet
        # (1.2 s, far over it), comes back, gets up in the morning.
        night = [(0.0, True), (0.4, False), (0.45, True), (0.8, False), (0.85, True),
                 (1.2, False), (2.4, True), (2.9, False)]
        with ContactSim(gpio.factory, PIN, bounce=2).play(night) as pad:
            assert pad.wait_for_changes(len(night), timeout=10)

        def seen():
            with lock:
                return [r["value"] for r in records][-1:] == [False] and len(records) >= 5
        wait_until(seen, 10, "the morning's presence false")
    finally:
        worker.stop()
    assert [r["value"] for r in records] == [False, True, False, True, False]
    assert all(r["quantity"] == "presence" and r["quality"] == "good" for r in records)


def test_sample_config_is_valid():
    sample = (ROOT / "drivers" / "bed_pad" / "sample.toml").read_text()
    minimal = (ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text()
    config = validate(tomllib.loads(minimal + sample))
    [sensor] = config.sensors
    assert (sensor.interval, sensor.options["hold"], sensor.options["debounce"]) == (1.0, 10.0, 0.5)
    [rule] = config.rules
    assert (rule.quantity, rule.kind, rule.params["equals"]) == ("presence", "state", False)


def test_documentation_examples_hold():
    results = doctest.testmod(drivers.bed_pad)
    assert results.attempted > 0
    assert results.failed == 0
