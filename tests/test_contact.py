"""contact on gpiozero's MockFactory: changes between reads, debounce, activations per hour, polarity, the sampler."""

from __future__ import annotations

import doctest
import importlib.util
import threading
import time
import tomllib
from pathlib import Path

import pytest

import drivers.contact
import drivers.contact.watch
import edge.simulate.contacts
from drivers.base import Measurement
from drivers.contact import ACTIVATIONS, Contact
from drivers.contact.watch import MAX_CHANGES, Activations, StableLevel
from drivers.errors import DriverError, TransportError
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.gpio import GpioBus
from edge.config import validate
from edge.sampler import BusWorker, SensorSlot
from edge.simulate.contacts import ContactSim, pump_starts
from tests.mqtt_helpers import wait_until

PIN = 5
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bus():
    with GpioBus("pins", {"pin_factory": "mock"}) as gpio:
        yield gpio


def contact(bus, sensor_id: str = "jockey-pump", **options) -> Contact:
    raw = {"pin": PIN, "quantity": "pump_running", "debounce": "0ms", "report_every": "0s", **options}
    values, problems = validate_options(Contact.options, raw)
    assert problems == []
    assert Contact.check_options(values) == []
    return Contact(sensor_id, values, bus)


def states(measurements: list[Measurement], quantity: str = "pump_running") -> list[bool]:
    return [m.value for m in measurements if m.quantity == quantity]


def activations(measurements: list[Measurement]) -> int:
    [count] = [m.value for m in measurements if m.quantity == ACTIVATIONS]
    return count


def test_registry_names_this_class():
    assert driver_class("contact") is Contact
    assert Contact.bus_kind == "gpio"


# --- validation -----------------------------------------------------------------------------------

def problems(raw) -> list[tuple[str, str]]:
    values, found = validate_options(Contact.options, raw)
    return found or Contact.check_options(values)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, [("pin", "is required"), ("quantity", "is required")]),
        ({"pin": 28, "quantity": "door_open"}, [("pin", "must be at most 27, got 28")]),
        ({"pin": 5, "quantity": "pump running"},
         [("quantity", 'expected a snake_case name like "pump_running", got "pump running"')]),
        ({"pin": 5, "quantity": "PumpRunning"},
         [("quantity", 'expected a snake_case name like "pump_running", got "PumpRunning"')]),
        ({"pin": 5, "quantity": "pump__running"},
         [("quantity", 'expected a snake_case name like "pump_running", got "pump__running"')]),
        ({"pin": 5, "quantity": "activations_last_hour"},
         [("quantity", '"activations_last_hour" is published by every contact; name the contact itself')]),
        ({"pin": 5, "quantity": "door_open", "pull": "float"},
         [("pull", 'expected one of "up", "down", "none", got "float"')]),
        ({"pin": 5, "quantity": "door_open", "pull": "none"},
         [("active_high", 'is required with pull = "none": true when the pin is high means on, '
                          "false when low does")]),
        ({"pin": 5, "quantity": "door_open", "active_high": "yes"},
         [("active_high", 'expected true or false, got "yes"')]),
        ({"pin": 5, "quantity": "door_open", "debounce": "11s"}, [("debounce", 'must be at most 10s, got "11s"')]),
        ({"pin": 5, "quantity": "door_open", "bounce": "5ms"}, [("bounce", "unknown key")]),
    ],
)
def test_option_problems(raw, expected):
    assert problems(raw) == expected


def test_defaults_and_quantities():
    values, found = validate_options(Contact.options, {"pin": 5, "quantity": "pump_fault"})
    assert found == []
    assert values == {"pin": 5, "quantity": "pump_fault", "pull": "up", "active_high": None, "debounce": 0.05,
                      "report_every": 60.0}
    assert Contact.quantities_for(values) == ("pump_fault", "activations_last_hour")
    assert problems({"pin": 5, "quantity": "door_open", "pull": "none", "active_high": False}) == []


# --- the debounced level, on explicit times -------------------------------------------------------

def test_a_change_is_accepted_once_it_has_held_for_the_debounce_time_and_dated_at_its_edge():
    level = StableLevel(False, rise=0.05, fall=0.05)
    level.edge(10.0, True)
    assert level.settle(10.049) is False
    assert level.settle(10.05) is True
    assert level.take_changes() == [(10.0, True)]
    assert level.take_changes() == []


def test_bounces_are_not_changes_and_a_glitch_shorter_than_debounce_is_nothing():
    level = StableLevel(False, rise=0.05, fall=0.05)
    for t, on in [(1.0, True), (1.0002, False), (1.0004, True), (1.0006, False), (1.0008, True)]:
        level.edge(t, on)
    level.edge(2.0, False)  # the pump stops a second later, bouncing too
    level.edge(2.0003, True)
    level.edge(2.0005, False)
    level.edge(3.0, True)   # a 1 ms glitch: not a start
    level.edge(3.001, False)
    assert level.settle(4.0) is False
    # Dated from the first edge of each bounce train: that is when the contact really moved.
    assert level.take_changes() == [(1.0, True), (2.0, False)]
    assert level.activations.last_hour(4.0) == 1


def test_a_spike_back_to_the_old_level_does_not_restart_the_hold():
    # A bed pad opened at 0 s; a 1 ms spike every 8 s on a long cable must not keep the bed "occupied".
    pad = StableLevel(True, rise=0.5, fall=10.0, now=0.0)
    pad.edge(0.0, False)
    for t in (8.0, 16.0, 24.0):
        pad.edge(t, True)
        pad.edge(t + 0.001, False)
    assert pad.settle(30.0) is False
    assert pad.take_changes() == [(0.0, False)]


def test_a_return_that_holds_cancels_the_change():
    pad = StableLevel(True, rise=0.5, fall=10.0, now=0.0)
    pad.edge(0.0, False)       # got up...
    pad.edge(3.0, True)        # ...and lay down again within the hold: turning over, not leaving
    assert pad.settle(3.4) is True and pad.settle(20.0) is True
    assert pad.take_changes() == []


def test_a_missed_edge_repeating_the_level_changes_nothing():
    level = StableLevel(True, rise=0.0, fall=0.0)
    level.edge(1.0, True)
    level.edge(2.0, False)
    level.edge(2.5, False)  # hardware lost the rising edge in between: the level is what counts
    assert level.settle(3.0) is False
    assert level.take_changes() == [(2.0, False)]


def test_edge_times_never_run_backwards():
    level = StableLevel(False, rise=0.0, fall=0.0)
    level.edge(5.0, True)
    level.edge(4.9999, False)  # ticks converted to monotonic time jitter
    assert level.settle(6.0) is False
    assert level.take_changes() == [(5.0, True), (5.0, False)]


def test_activations_leave_the_rolling_hour_to_the_second():
    counter = Activations()
    for t in range(0, 3600, 300):  # a start every 5 minutes
        counter.add(float(t))
    assert counter.last_hour(3599.0) == 12
    assert counter.last_hour(3600.0) == 11  # the start at 0 s counted until 3600 s
    assert counter.last_hour(3600.0 + 3000.0) == 1
    assert counter.last_hour(10_000.0) == 0


def test_a_chattering_contact_keeps_memory_bounded():
    level = StableLevel(False, rise=0.0, fall=0.0)
    for n in range(10 * MAX_CHANGES):
        level.edge(float(n), n % 2 == 0)
    assert level.settle(1e6) is False
    changes = level.take_changes()
    assert len(changes) == MAX_CHANGES
    assert changes[-1] == (10 * MAX_CHANGES - 1.0, False)
    assert level.dropped == 10 * MAX_CHANGES - MAX_CHANGES
    assert level.activations.last_hour(10 * MAX_CHANGES) == 5 * MAX_CHANGES


# --- the driver on MockFactory --------------------------------------------------------------------

def test_first_read_is_the_state_and_each_change_follows(bus):
    with contact(bus) as pump:
        pin = bus.factory.pin(PIN)
        assert pin.pull == "up"
        first = pump.read()
        assert first == [Measurement("pump_running", False, None), Measurement(ACTIVATIONS, 0, None)]
        pin.drive_low()  # the contact closes to ground: running
        assert pump.read() == [Measurement("pump_running", True, None), Measurement(ACTIVATIONS, 1, None)]
        pin.drive_high()
        assert pump.read() == [Measurement("pump_running", False, None), Measurement(ACTIVATIONS, 1, None)]


def test_a_run_between_two_reads_is_published_as_a_start_and_a_stop(bus):
    with contact(bus) as pump:
        pin = bus.factory.pin(PIN)
        pump.read()
        for _ in range(3):  # three short runs, all between two reads of the sampler
            pin.drive_low()
            pin.drive_high()
        readings = pump.read()
    assert states(readings) == [True, False, True, False, True, False]
    assert activations(readings) == 3


def test_nothing_changed_publishes_nothing_until_report_every(bus):
    with contact(bus, report_every="1h") as pump:
        pin = bus.factory.pin(PIN)
        assert states(pump.read()) == [False]  # the first read always reports
        assert pump.read() == []
        pin.drive_low()
        assert states(pump.read()) == [True]
        assert pump.read() == []
    with contact(bus, report_every="50ms") as pump:
        started = time.monotonic()
        assert states(pump.read()) == [False]
        again = wait_until(pump.read, 10, "the state reported again")
        assert time.monotonic() - started >= 0.05
        assert states(again) == [False]


@pytest.mark.parametrize(
    ("pull", "active_high", "level", "expected"),
    [
        ("up", None, "low", True),     # contact closes to ground
        ("up", None, "high", False),
        ("down", None, "high", True),  # contact closes to 3.3 V
        ("down", None, "low", False),
        ("up", True, "high", True),    # a normally-closed fault contact: open (or a cut wire) is a fault
        ("up", True, "low", False),
        ("none", True, "high", True),  # an optocoupler or an external pull resistor drives the pin
        ("none", False, "high", False),
        ("none", False, "low", True),
    ],
)
def test_polarity(bus, pull, active_high, level, expected):
    options = {"pull": pull} if active_high is None else {"pull": pull, "active_high": active_high}
    pin = bus.factory.pin(PIN)
    with contact(bus, quantity="pump_fault", **options) as fault:
        (pin.drive_low if level == "high" else pin.drive_high)()  # the opposite level first …
        fault.read()
        (pin.drive_high if level == "high" else pin.drive_low)()  # … then the level under test
        assert states(fault.read(), "pump_fault")[-1] is expected


def test_debounce_waits_for_the_level_to_hold_and_ignores_bounces(bus):
    with contact(bus, debounce="100ms", report_every="1h") as pump:
        pin = bus.factory.pin(PIN)
        pump.read()
        with ContactSim(bus.factory, PIN, bounce=5) as switch:
            pin.drive_low()
            pin.drive_high()  # a glitch of microseconds: never a start
            closed_at = time.monotonic()
            switch.set(closed=True)  # closes with five bounces
            published: list[Measurement] = []
            wait_until(lambda: published.extend(pump.read()) or True in states(published), 10, "the start")
            assert time.monotonic() - closed_at >= 0.1  # not before the level held for the debounce time
            switch.set(closed=False)
            wait_until(lambda: published.extend(pump.read()) or states(published)[-1] is False, 10, "the stop")
    assert states(published) == [True, False]
    assert activations(published[-2:]) == 1


def test_more_changes_than_kept_are_reported_uncertain_with_the_final_state_right(bus):
    with contact(bus, report_every="1h") as pump:
        pin = bus.factory.pin(PIN)
        pump.read()
        for _ in range(MAX_CHANGES):
            pin.drive_low()
            pin.drive_high()
        pin.drive_low()
        readings = pump.read()
        published = [m for m in readings if m.quantity == "pump_running"]
        assert len(published) == MAX_CHANGES
        assert {(m.quality, m.reason) for m in published} == {("uncertain", "chatter")}
        assert published[-1].value is True
        assert activations(readings) == MAX_CHANGES + 1
        assert pump.read() == []  # nothing new since


def test_close_and_open_again_keep_the_count_and_see_the_level_now(bus):
    # A floating pin driven from outside (here low = on): MockFactory re-drives a pulled pin when it is released.
    pump = contact(bus, pull="none", active_high=False, report_every="1h")
    pump.open()
    pin = bus.factory.pin(PIN)
    pin.drive_high()
    assert states(pump.read()) == [False]
    pin.drive_low()
    pin.drive_high()
    pump.close()
    pump.close()
    pin.drive_low()  # while closed nobody listens; the new level is seen at the next open
    with pump:
        readings = pump.read()
    assert states(readings) == [True, False, True]
    assert activations(readings) == 2


def test_read_before_open(bus):
    with pytest.raises(DriverError, match="contact jockey-pump on GPIO5 is not open"):
        contact(bus).read()


def test_pin_taken_by_another_sensor(bus):
    with contact(bus, sensor_id="a"), pytest.raises(TransportError) as err:
        contact(bus, sensor_id="b").open()
    assert str(err.value).startswith("GPIO5 cannot be used for sensor b: ")


def test_gpio_bus_not_open():
    with pytest.raises(TransportError, match="GPIO bus pins is not open"):
        contact(GpioBus("pins", {"pin_factory": "mock"})).open()


def test_edges_from_another_thread_are_all_seen(bus):
    # gpiozero reports edges on its own thread while the bus thread reads: nothing may be lost or doubled.
    with contact(bus, report_every="1h") as pump:
        pin = bus.factory.pin(PIN)
        published: list[Measurement] = []
        done = threading.Event()

        def runs():
            for _ in range(500):
                pin.drive_low()
                pin.drive_high()
            done.set()

        threading.Thread(target=runs, daemon=True).start()
        while not done.is_set():
            published += pump.read()
        published += pump.read()
    assert [m.value for m in published if m.quantity == ACTIVATIONS][-1] == 500, "no start lost or doubled"
    assert [m.value for m in published if m.quantity == "pump_running"][-1] is False
    reads = [[]]
    for m in published:  # each read's changes alternate, whatever a slow read may have had to drop
        if m.quantity == ACTIVATIONS:
            reads.append([])
        else:
            reads[-1].append(m.value)
    assert all(a != b for values in reads for a, b in zip(values, values[1:], strict=False))


# --- through the sampler --------------------------------------------------------------------------

def sampled(bus, driver, interval: float):
    records: list[dict] = []
    lock = threading.Lock()

    def emit(record, _state):
        with lock:
            records.append(record)

    worker = BusWorker(bus, [SensorSlot(driver.sensor_id, driver, interval)], emit, lambda: {"ts": 0})
    return worker, records, lock


def test_the_sampler_publishes_each_run_of_a_jockey_pump_and_its_count():
    gpio = GpioBus("pins", {"pin_factory": "mock"})
    pump = contact(gpio, debounce="20ms", report_every="1h")
    worker, records, lock = sampled(gpio, pump, interval=0.8)
    worker.start()
    try:
        wait_until(lambda: worker.slots[0].opened, 10, "the contact opened")
        # Runs of 250 ms every 500 ms: starts and stops between two reads, each bouncing on the way.
        with ContactSim(gpio.factory, PIN, bounce=3).play(pump_starts(every=0.5, run=0.25, count=4)) as sim:
            assert sim.wait_for_changes(8, timeout=10)

        def counted():
            with lock:
                values = [r["value"] for r in records if r["quantity"] in (ACTIVATIONS, "pump_running")]
                return values[-2:] == [False, 4]
        wait_until(counted, 10, "the last stop and four activations published")
    finally:
        worker.stop()
    running = [r["value"] for r in records if r["quantity"] == "pump_running"]
    assert running == [False] + [True, False] * 4
    assert all(r["quality"] == "good" and r["sensor"] == "jockey-pump" for r in records)


@pytest.mark.skipif(importlib.util.find_spec("lgpio") is not None, reason="lgpio is installed here and may work")
def test_a_pin_factory_that_does_not_work_is_reported_loudly_on_every_sensor_of_the_bus():
    gpio = GpioBus("pins", {"pin_factory": "lgpio"})
    worker, records, lock = sampled(gpio, contact(gpio), interval=0.1)
    worker.start()
    try:
        wait_until(lambda: len(records) >= 2, 10, "bad readings")
    finally:
        worker.stop()
    with lock:
        first = records[0]
    assert (first["quality"], first["reason"], first["value"]) == ("bad", "transport", None)
    assert first["quantity"] == "pump_running"
    assert 'GPIO pin factory "lgpio" (from pin_factory = "lgpio") does not work here' in first["error"]
    assert 'set pin_factory = "mock"' in first["error"]
    assert worker.bus_error.startswith('GPIO pin factory "lgpio"')


def test_sample_config_is_valid_and_builds_both_contacts():
    sample = (ROOT / "drivers" / "contact" / "sample.toml").read_text()
    minimal = (ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text()
    config = validate(tomllib.loads(minimal + sample))
    [bus] = config.buses
    built = [Contact(s.id, s.options, GpioBus(bus.name, bus.options)) for s in config.sensors]
    assert [(c.quantity, c.pin, c._watcher.high_is_on) for c in built] == [
        ("pump_running", 5, False), ("pump_fault", 6, True)]
    assert [r.kind for r in config.rules] == ["count", "state"]


@pytest.mark.parametrize("module", [drivers.contact, drivers.contact.watch, edge.simulate.contacts])
def test_documentation_examples_hold(module):
    results = doctest.testmod(module)
    assert results.attempted > 0
    assert results.failed == 0


def test_spikes_on_an_empty_bed_never_make_presence():
    pad = StableLevel(False, rise=0.5, fall=10.0, now=0.0)
    for t in (8.0, 16.0, 24.0):
        pad.edge(t, True)
        pad.edge(t + 0.001, False)
    assert pad.settle(30.0) is False
    assert pad.take_changes() == []


def test_a_change_whose_edge_the_hardware_missed_is_seen_at_the_next_read(bus):
    with contact(bus) as pump:
        pin = bus.factory.pin(PIN)
        assert [m.value for m in pump.read() if m.quantity == "pump_running"] == [False]
        pin._state = False   # the contact closed, but no edge was reported (as a lost interrupt would do)
        changes = [m.value for m in pump.read() if m.quantity == "pump_running"]
    assert changes == [True]
