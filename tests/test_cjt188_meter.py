"""cjt188_meter end to end: the driver, a SerialBus on a real pty, the simulated line and simulated meters."""

from __future__ import annotations

import contextlib
import threading
import time
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

import drivers.cjt188_meter
from drivers.cjt188_meter import Cjt188Meter
from drivers.codecs.cjt188 import CJT188Fault, di_bytes, parse_frame
from drivers.codecs.cjt188_exchange import read_address
from drivers.errors import DeviceFault, FrameError, TransportTimeout
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.serial import SerialBus
from edge.config import validate
from edge.sampler import BusWorker, SensorSlot
from edge.simulate.cjt188_meter import UNIT_L, UNIT_M3, Cjt188WaterMeter
from edge.simulate.line import SimulatedLine

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "00000805000001"
NEIGHBOUR = "00000805000002"
DI_2004, DI_2018 = di_bytes(0x901F, "2004"), di_bytes(0x901F, "2018")


@contextlib.contextmanager
def rig(*meters, baudrate: int = 9600, timeout: str = "300ms") -> Iterator[tuple[SimulatedLine, SerialBus]]:
    """Meters on a simulated line, and an open SerialBus on its pty."""
    values, problems = validate_options(SerialBus.options, {"port": "-", "baudrate": baudrate, "parity": "E",
                                                            "timeout": timeout})
    assert problems == []
    with SimulatedLine(meters, baudrate=baudrate) as line, SerialBus("meters", {**values, "port": line.path}) as bus:
        yield line, bus


def meter_driver(bus, **options) -> Cjt188Meter:
    values, problems = validate_options(Cjt188Meter.options, {"address": ADDRESS, **options})
    assert problems == []
    return Cjt188Meter("flat-0602-water", values, bus)


def by_quantity(measurements) -> dict:
    return {m.quantity: m for m in measurements}


def values(measurements) -> dict:
    return {m.quantity: m.value for m in measurements}


def dis(line: SimulatedLine) -> list[bytes]:
    """The DI bytes of every read-data request on the line, in order."""
    return [parse_frame(request).data[:2] for request in line.requests]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_registry_names_this_class():
    assert driver_class("cjt188_meter") is Cjt188Meter
    assert Cjt188Meter.bus_kind == "serial"
    assert Cjt188Meter.quantities == ("volume", "settlement_volume", "clock_offset", "valve_open", "battery_low")


def test_module_doctest():
    import doctest
    assert doctest.testmod(drivers.cjt188_meter).failed == 0


# --- configuration, no I/O ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "problems"), [
    ({}, [("address", "is required")]),
    ({"address": 805000001}, [("address", "expected a string, got 805000001")]),
    ({"address": "805000001"},
     [("address", 'expected the meter\'s 14-digit address as a string, leading zeros included, '
                  'e.g. "00000805000001", got "805000001"')]),
    ({"address": "AAAAAAAAAAAAAA"}, [("address", 'expected the meter\'s 14-digit address as a string, leading zeros '
                                                 'included, e.g. "00000805000001", got "AAAAAAAAAAAAAA"')]),
    ({"address": ADDRESS, "meter_type": "heat"},
     [("meter_type", 'expected one of "cold_water", "hot_water", "drinking_water", "reclaimed_water", "gas", '
                     'got "heat"')]),
    ({"address": ADDRESS, "di_order": "2019"}, [("di_order", 'expected one of "2004", "2018", "auto", got "2019"')]),
    ({"address": ADDRESS, "di_order": 2004}, [("di_order", "expected a string, got 2004")]),
    ({"address": ADDRESS, "preamble": 5}, [("preamble", "must be at most 4, got 5")]),
    ({"address": ADDRESS, "preamble": -1}, [("preamble", "must be at least 0, got -1")]),
    ({"address": ADDRESS, "retries": 6}, [("retries", "must be at most 5, got 6")]),
    ({"address": ADDRESS, "meter_utc_offset": "8"},
     [("meter_utc_offset", 'expected a UTC offset like "+08:00", got "8"')]),
    ({"address": ADDRESS, "meter_utc_offset": "+15:00"},
     [("meter_utc_offset", 'expected a UTC offset like "+08:00", got "+15:00"')]),
    ({"address": ADDRESS, "valve_byte": 2}, [("valve_byte", "must be at most 1, got 2")]),
    ({"address": ADDRESS, "battery_bit": 8}, [("battery_bit", "must be at most 7, got 8")]),
    ({"address": ADDRESS, "adress": ADDRESS}, [("adress", "unknown key")]),
])
def test_option_problems_name_their_key(raw, problems):
    assert validate_options(Cjt188Meter.options, raw)[1] == problems


@pytest.mark.parametrize(("raw", "problems"), [
    ({"valve_closed_code": 0},
     [("valve_closed_code", 'is the same code (0) as "valve_open_code"; the valve cannot be open and closed at once')]),
    ({"valve_open_code": 2, "valve_closed_code": 2},
     [("valve_open_code", 'is the same code (2) as "valve_closed_code"; the valve cannot be open and closed at once')]),
    ({"battery_bit": 1}, [("battery_bit", "is one of the valve bits (ST0 bits 0–1); see valve_shift")]),
    ({"valve_shift": 4, "battery_bit": 5},
     [("battery_bit", "is one of the valve bits (ST0 bits 4–5); see valve_shift")]),
    ({"valve_byte": 1, "valve_shift": 4, "battery_bit": 5}, []),  # different bytes
    ({"valve_open_code": 2, "valve_closed_code": 1, "valve_shift": 3}, []),
])
def test_cross_key_problems(raw, problems):
    values_, single = validate_options(Cjt188Meter.options, {"address": ADDRESS, **raw})
    assert single == []
    assert Cjt188Meter.check_options(values_) == problems


def test_constructor_refuses_conflicts_without_io(tmp_path):
    values_, _ = validate_options(Cjt188Meter.options, {"address": ADDRESS, "battery_bit": 0})
    never_opened = SerialBus("meters", {"port": str(tmp_path / "ttyUSB9")})
    with pytest.raises(ValueError, match="battery_bit: is one of the valve bits"):
        Cjt188Meter("w", values_, never_opened)
    assert not never_opened.is_open


def test_sample_config_is_valid_and_builds_both_meters():
    sample = (ROOT / "drivers" / "cjt188_meter" / "sample.toml").read_text()
    minimal = (ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text()
    config = validate(tomllib.loads(minimal + sample))
    [bus] = config.buses
    assert (bus.options["baudrate"], bus.options["parity"], bus.options["timeout"]) == (2400, "E", 0.5)
    built = [Cjt188Meter(s.id, s.options, SerialBus(bus.name, bus.options)) for s in config.sensors]
    assert [(m.address, m.di_order, m.auto) for m in built] == [
        ("00000805000001", "2004", False), ("78330011223344", "2004", True)]


# --- both editions, fixed order -------------------------------------------------------------------------------

@pytest.mark.parametrize("edition", ["2004", "2018"])
def test_reads_a_meter_of_each_edition(edition):
    meter = Cjt188WaterMeter(ADDRESS, di_order=edition, start_m3=321.09, valve_open=False, battery_low=True)
    with rig(meter, baudrate=2400, timeout="500ms") as (line, bus):
        got = by_quantity(meter_driver(bus, di_order=edition).read())
    assert values(got.values()) | {"clock_offset": None} == {
        "volume": 321.09, "settlement_volume": 321.09, "clock_offset": None, "valve_open": False, "battery_low": True}
    assert (got["volume"].unit, got["settlement_volume"].unit, got["clock_offset"].unit) == ("m3", "m3", "s")
    assert abs(got["clock_offset"].value) <= 1.0
    assert all(m.quality == "good" for m in got.values())
    assert dis(line) == [di_bytes(0x901F, edition)]


def test_fixed_order_refuses_an_answer_in_the_other_order():
    meter = Cjt188WaterMeter(ADDRESS, di_order="2018", other_order="answer")
    with rig(meter) as (line, bus), pytest.raises(FrameError) as caught:
        meter_driver(bus, di_order="2004", retries=0).read()
    assert "reply DI 1f 90 is not 901F in the 2004 byte order" in str(caught.value)


def test_fixed_order_that_the_meter_ignores_is_a_timeout():
    meter = Cjt188WaterMeter(ADDRESS, di_order="2018")
    with rig(meter) as (line, bus), pytest.raises(TransportTimeout, match="no answer from CJ/T 188 meter"):
        meter_driver(bus, di_order="2004", retries=1).read()
    assert dis(line) == [DI_2004, DI_2004]


# --- auto -----------------------------------------------------------------------------------------------------

def test_auto_with_a_2004_meter_stays_with_2004():
    with rig(Cjt188WaterMeter(ADDRESS, di_order="2004", start_m3=1.5)) as (line, bus):
        driver = meter_driver(bus)
        assert [values(driver.read())["volume"] for _ in range(3)] == [1.5, 1.5, 1.5]
    assert dis(line) == [DI_2004] * 3
    assert (driver.di_order, driver.learned) == ("2004", True)


@pytest.mark.parametrize("other_order", ["ignore", "error"])
def test_auto_finds_a_2018_meter_that_ignores_or_refuses_2004_and_remembers(other_order):
    with rig(Cjt188WaterMeter(ADDRESS, di_order="2018", start_m3=2.5, other_order=other_order)) as (line, bus):
        driver = meter_driver(bus, retries=0)  # both orders are tried even without retries
        assert [values(driver.read())["volume"] for _ in range(3)] == [2.5, 2.5, 2.5]
    assert dis(line) == [DI_2004, DI_2018, DI_2018, DI_2018]
    assert (driver.di_order, driver.learned) == ("2018", True)


def test_auto_takes_the_order_a_2018_meter_answers_in():
    with rig(Cjt188WaterMeter(ADDRESS, di_order="2018", other_order="answer", start_m3=3.5)) as (line, bus):
        driver = meter_driver(bus)
        assert [values(driver.read())["volume"] for _ in range(2)] == [3.5, 3.5]
    assert dis(line) == [DI_2004, DI_2018]


def test_auto_finds_a_meter_exchanged_for_the_other_edition():
    old = Cjt188WaterMeter(ADDRESS, di_order="2004", start_m3=10.0)
    new = Cjt188WaterMeter(ADDRESS, di_order="2018", start_m3=0.25)
    with rig(old) as (line, bus):
        driver = meter_driver(bus, retries=0)
        assert values(driver.read())["volume"] == 10.0
        line.detach(old)
        line.attach(new)
        with pytest.raises(TransportTimeout):
            driver.read()
        driver.failing = True  # as the bus thread sets it after a failed read: one request per read
        with pytest.raises(TransportTimeout):
            driver.read()
        assert values(driver.read())["volume"] == 0.25
        driver.failing = False
        assert values(driver.read())["volume"] == 0.25
    assert dis(line) == [DI_2004, DI_2004, DI_2004, DI_2018, DI_2018]


def test_auto_silent_meter_alternates_orders_one_request_per_failing_read():
    meter = Cjt188WaterMeter(ADDRESS)
    with rig(meter) as (line, bus):
        line.set_fault(meter, "silent")
        driver = meter_driver(bus, retries=2)
        with pytest.raises(TransportTimeout, match=r"\(after 3 attempts\)$"):
            driver.read()
        assert dis(line) == [DI_2004, DI_2018, DI_2004]
        driver.failing = True
        for _ in range(2):
            with pytest.raises(TransportTimeout) as caught:
                driver.read()
            assert "attempts" not in str(caught.value)
        assert dis(line)[3:] == [DI_2018, DI_2004]
        line.set_fault(meter, None)
        with pytest.raises(TransportTimeout):
            driver.read()  # its turn for 2018, which this 2004 meter ignores
        assert values(driver.read())["volume"] == 0.0
        assert dis(line)[5:] == [DI_2018, DI_2004]


# --- the wire: preamble, broadcast, units, growth --------------------------------------------------------------

@pytest.mark.parametrize("preamble", [0, 4])
def test_preamble(preamble):
    with rig(Cjt188WaterMeter(ADDRESS, start_m3=7.0)) as (line, bus):
        assert values(meter_driver(bus, preamble=preamble, di_order="2004").read())["volume"] == 7.0
    [request] = line.requests
    assert request[:preamble + 1] == b"\xfe" * preamble + b"\x68"


@pytest.mark.parametrize("edition", ["2004", "2018"])
def test_read_address_by_broadcast(edition):
    with rig(Cjt188WaterMeter("12345678901234", di_order=edition)) as (line, bus):
        assert read_address(bus) == "12345678901234"


@pytest.mark.parametrize(("unit", "start_m3", "volume"), [(UNIT_L, 12.345, 12.345), (UNIT_M3, 12.345, 12.34)])
def test_volume_in_litres_or_cubic_metres_is_published_in_m3(unit, start_m3, volume):
    with rig(Cjt188WaterMeter(ADDRESS, unit=unit, start_m3=start_m3)) as (line, bus):
        got = by_quantity(meter_driver(bus).read())
    assert (got["volume"].value, got["volume"].unit) == (volume, "m3")


def test_volume_grows_with_use_and_settlement_stays_until_settled():
    clock = Clock()
    meter = Cjt188WaterMeter(ADDRESS, flow=10.0, start_m3=100.0, unit=UNIT_L, clock=clock)
    with rig(meter) as (line, bus):
        driver = meter_driver(bus)
        assert values(driver.read())["volume"] == 100.0
        clock.now += 90.0  # 15 L at 10 L/min
        assert [values(driver.read())[q] for q in ("volume", "settlement_volume")] == [100.015, 100.0]
        meter.settle()
        clock.now += 6.0
        assert [values(driver.read())[q] for q in ("volume", "settlement_volume")] == [100.016, 100.015]


def test_a_non_volume_unit_is_a_bad_reading_never_a_wrong_m3():
    with rig(Cjt188WaterMeter(ADDRESS, unit=0x05, start_m3=42.0)) as (line, bus):
        got = by_quantity(meter_driver(bus).read())
    for quantity in ("volume", "settlement_volume"):
        assert (got[quantity].value, got[quantity].quality) == (None, "bad")
        assert got[quantity].reason.startswith("meter reports 42 kWh, not a volume")
    assert all(got[q].quality == "good" for q in ("clock_offset", "valve_open", "battery_low"))


# --- status and clock -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("st", "valve_open", "reason"), [
    ((0x00, 0x00), True, None),
    ((0x01, 0x00), False, None),
    ((0x03, 0x00), None, "valve reports abnormal (ST0 bits 0–1 = 11, ST0 = 03): stuck or motor fault"),
    ((0x02, 0x00), None, "valve state unknown: ST0 bits 0–1 of ST0 = 02 match neither valve_open_code nor "
                         "valve_closed_code"),
])
def test_valve_state(st, valve_open, reason):
    meter = Cjt188WaterMeter(ADDRESS)
    meter.set_status_bytes(st)
    with rig(meter) as (line, bus):
        got = by_quantity(meter_driver(bus).read())["valve_open"]
    assert (got.value, got.reason, got.quality) == (valve_open, reason, "good" if reason is None else "bad")


def test_vendor_status_mapping():
    # Valve in ST1 bits 4–5 with 10 = open and 01 = closed, battery low in ST1 bit 7.
    meter = Cjt188WaterMeter(ADDRESS)
    options = {"valve_byte": 1, "valve_shift": 4, "valve_open_code": 2, "valve_closed_code": 1,
               "battery_byte": 1, "battery_bit": 7}
    with rig(meter) as (line, bus):
        driver = meter_driver(bus, **options)
        meter.set_status_bytes((0x07, 0xA0))
        assert (values(driver.read())["valve_open"], values(driver.read())["battery_low"]) == (True, True)
        meter.set_status_bytes((0x00, 0x10))
        assert (values(driver.read())["valve_open"], values(driver.read())["battery_low"]) == (False, False)


def test_battery_low():
    with rig(Cjt188WaterMeter(ADDRESS, battery_low=True)) as (line, bus):
        assert values(meter_driver(bus).read())["battery_low"] is True


@pytest.mark.parametrize("offset", [3600.0, -120.0, 86400.0 * 3])
def test_clock_offset_is_meter_minus_gateway(offset):
    with rig(Cjt188WaterMeter(ADDRESS, clock_offset_s=offset)) as (line, bus):
        got = by_quantity(meter_driver(bus).read())["clock_offset"]
    assert got.unit == "s" and got.quality == "good"
    assert abs(got.value - offset) <= 1.0


def test_clock_offset_uses_the_meters_time_zone_not_the_gateways():
    meter = Cjt188WaterMeter(ADDRESS, utc_offset_h=0.0)  # a meter set to UTC
    with rig(meter) as (line, bus):
        assert abs(values(meter_driver(bus, meter_utc_offset="+00:00").read())["clock_offset"]) <= 1.0
        assert abs(values(meter_driver(bus).read())["clock_offset"] + 8 * 3600) <= 1.0  # read as Beijing time


def test_a_meter_without_a_settlement_day_gives_a_bad_settlement_volume_only():
    meter = Cjt188WaterMeter(ADDRESS, start_m3=6.0)
    meter.forget_settlement()
    with rig(meter) as (line, bus):
        got = by_quantity(meter_driver(bus).read())
    assert (got["settlement_volume"].value, got["settlement_volume"].quality) == (None, "bad")
    assert "unfilled (FF)" in got["settlement_volume"].reason
    assert (got["volume"].value, got["volume"].quality) == (6.0, "good")


def test_the_driver_reads_a_published_meter_reply():
    published = bytes.fromhex((ROOT / "tests" / "data" / "cjt188" / "foxedge_read_data_reply_2004_a.hex").read_text())

    class Published:
        def answer(self, request: bytes) -> bytes | None:
            return published if parse_frame(request).address == ADDRESS else None

    with rig(Published()) as (line, bus):
        got = by_quantity(meter_driver(bus, di_order="2004").read())  # the first request carries SER 0, as the reply
    assert values(got.values()) == {"volume": 123.0, "settlement_volume": 0.0, "clock_offset": None,
                                    "valve_open": True, "battery_low": False}
    assert got["clock_offset"].quality == "bad"  # this meter sends an all-zero clock


def test_unset_meter_clock_is_a_bad_clock_offset():
    with rig(Cjt188WaterMeter(ADDRESS, clock_offset_s=None, start_m3=5.0)) as (line, bus):
        got = by_quantity(meter_driver(bus).read())
    assert (got["clock_offset"].value, got["clock_offset"].quality) == (None, "bad")
    assert "meter clock unset or not a date" in got["clock_offset"].reason
    assert got["volume"].value == 5.0


# --- failures -------------------------------------------------------------------------------------------------

def test_silent_meter_times_out_with_retries_then_one_attempt_while_failing():
    meter = Cjt188WaterMeter(ADDRESS)
    with rig(meter) as (line, bus):
        line.set_fault(meter, "silent")
        driver = meter_driver(bus, di_order="2004", retries=2)
        with pytest.raises(TransportTimeout) as caught:
            driver.read()
        assert str(caught.value) == ("no answer from CJ/T 188 meter 00000805000001 within 0.3 s (after 3 attempts)")
        assert len(line.requests) == 3
        driver.failing = True
        with pytest.raises(TransportTimeout) as caught:
            driver.read()
        assert str(caught.value) == "no answer from CJ/T 188 meter 00000805000001 within 0.3 s"
        assert len(line.requests) == 4


def test_garbling_meter_is_a_frame_error():
    meter = Cjt188WaterMeter(ADDRESS)
    with rig(meter) as (line, bus):
        line.set_fault(meter, "garble")
        with pytest.raises(FrameError, match=r"checksum mismatch.*\(after 2 attempts\)"):
            meter_driver(bus, retries=1).read()
        assert len(line.requests) == 2
        line.set_fault(meter, None)
        assert values(meter_driver(bus).read())["volume"] == 0.0


def test_noise_before_the_answer_is_skipped():
    meter = Cjt188WaterMeter(ADDRESS, start_m3=8.0)
    with rig(meter) as (line, bus):
        line.set_fault(meter, "noise")
        assert values(meter_driver(bus).read())["volume"] == 8.0


class OneBehind:
    """A meter whose answers come so late that each one arrives with the next request's answer window."""

    def __init__(self, meter: Cjt188WaterMeter, keep_up: bool):
        self.meter = meter
        self.keep_up = keep_up  # also answer the current request, after the late answer
        self.previous: bytes | None = None

    def answer(self, request: bytes) -> bytes | None:
        current = self.meter.answer(request)
        late, self.previous = self.previous, current
        if self.keep_up:
            return (late or b"") + current
        return late


def test_a_late_answer_with_the_previous_ser_is_not_taken_for_this_one():
    clock = Clock()
    meter = Cjt188WaterMeter(ADDRESS, flow=10.0, start_m3=1.0, unit=UNIT_L, clock=clock)
    with rig(OneBehind(meter, keep_up=True)) as (line, bus):
        driver = meter_driver(bus, di_order="2004")
        assert values(driver.read())["volume"] == 1.0
        clock.now += 60.0
        assert values(driver.read())["volume"] == 1.01  # not the 1.0 of the late answer


def test_a_meter_that_never_echoes_ser_is_read_and_no_longer_waited_for():
    # Every answer comes back with SER 0 whatever was asked: after the first answer taken at the timeout,
    # the driver stops checking SER for this meter, so later reads do not wait out the timeout.
    meter = Cjt188WaterMeter(ADDRESS, start_m3=3.0)
    with rig(FixedSer(meter)) as (line, bus):
        driver = meter_driver(bus, di_order="2004", retries=0)
        assert values(driver.read())["volume"] == 3.0  # SER 0 asked, SER 0 answered
        assert driver.echoes_ser
        assert values(driver.read())["volume"] == 3.0  # SER 1 asked, SER 0 answered: taken at the timeout
        assert not driver.echoes_ser
        assert values(driver.read())["volume"] == 3.0
    assert len(line.requests) == 3


class FixedSer:
    """A meter whose answers always carry SER 0 (checksum made right again), as some firmware does."""

    def __init__(self, meter: Cjt188WaterMeter):
        self.meter = meter

    def answer(self, request: bytes) -> bytes | None:
        reply = self.meter.answer(request)
        if reply is None:
            return None
        start = reply.index(0x68)
        body = bytearray(reply[start:-2])
        body[11 + 2] = 0  # data starts after the 11-byte header; SER follows the 2-byte DI
        return reply[:start] + bytes(body) + bytes((sum(body) & 0xFF, 0x16))


def test_error_reply_is_a_device_fault_without_retries():
    meter = Cjt188WaterMeter(ADDRESS)
    meter.set_error_reply(b"\x5a\x01")
    with rig(meter) as (line, bus):
        with pytest.raises(CJT188Fault) as caught:
            meter_driver(bus, di_order="2004").read()
        assert isinstance(caught.value, DeviceFault) and caught.value.reason == "device_fault"
        assert str(caught.value) == "meter 00000805000001 answered with error reply C=C1, status 5a 01"
        assert len(line.requests) == 1  # a definite answer: not repeated


def test_error_reply_under_auto_tries_the_other_order_first():
    meter = Cjt188WaterMeter(ADDRESS)
    with rig(meter) as (line, bus):
        driver = meter_driver(bus)
        assert values(driver.read())["volume"] == 0.0  # learned: 2004
        meter.set_error_reply(b"\x00\x01")
        with pytest.raises(CJT188Fault):
            driver.read()
        assert dis(line) == [DI_2004, DI_2004]  # learned: a refusal is not retried
        with pytest.raises(CJT188Fault):
            driver.read()
        # Forgotten after the failed read: the orders alternate over the three attempts.
        assert dis(line)[2:] == [DI_2004, DI_2018, DI_2004]


# --- on the bus thread, next to a healthy neighbour -----------------------------------------------------------

def test_silent_meter_next_to_a_healthy_one_on_the_bus_thread():
    silent = Cjt188WaterMeter(ADDRESS)
    healthy = Cjt188WaterMeter(NEIGHBOUR, start_m3=4.0)
    records: list[dict] = []
    lock = threading.Lock()

    def emit(record, state):
        with lock:
            records.append(record)

    def count(sensor: str, quality: str) -> int:
        with lock:
            return sum(1 for r in records if r["sensor"] == sensor and r["quantity"] == "volume"
                       and r["quality"] == quality)

    with rig(silent, healthy, timeout="200ms") as (line, bus):
        line.set_fault(silent, "silent")
        slots = [SensorSlot("silent", meter_driver(bus, di_order="2004"), interval=0.1),
                 SensorSlot("healthy", meter_driver(bus, address=NEIGHBOUR, di_order="2004"), interval=0.1)]
        worker = BusWorker(bus, slots, emit, stamp=lambda: {"ts": int(time.time() * 1000)})
        worker.start()
        try:
            deadline = time.monotonic() + 20.0
            while (count("silent", "bad") < 3 or count("healthy", "good") < 5) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            worker.stop()
    assert count("silent", "bad") >= 3 and count("healthy", "good") >= 5
    to_silent = [r for r in line.requests if parse_frame(r).address == ADDRESS]
    # First failed read: 1 + 2 retries; every read after that while failing: one request.
    assert len(to_silent) == 3 + (count("silent", "bad") - 1)
    bad = next(r for r in records if r["sensor"] == "silent")
    assert (bad["reason"], bad["value"]) == ("timeout", None)
    assert bad["error"].startswith("no answer from CJ/T 188 meter 00000805000001 within 0.2 s")
    assert {r["value"] for r in records if r["sensor"] == "healthy" and r["quantity"] == "volume"} == {4.0}
