"""mbus_meter end to end: the driver, a SerialBus on a real pty, the simulated line and simulated meters
(and real meter frames from libmbus's set, served as canned answers)."""

from __future__ import annotations

import contextlib
import doctest
import logging
import time
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

import drivers.mbus_meter
from drivers.codecs.mbus import Record, decode_response
from drivers.codecs.mbus_link import long_frame, parse_frame, req_ud2
from drivers.errors import FrameError, TransportTimeout
from drivers.mbus_meter import MAX_TELEGRAMS, MbusMeter, is_reading, reading_name, to_agent_units
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.serial import SerialBus
from edge.config import validate
from edge.errors import ConfigError
from edge.sampler import BusWorker, SensorSlot
from edge.simulate.line import SimulatedLine
from edge.simulate.mbus_meter import MbusWaterMeter

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "mbus"
ACK = b"\xe5"
SND_NKE, REQ_UD2_FCB1, REQ_UD2_FCB0, SND_UD = 0x40, 0x7B, 0x5B, 0x53


@contextlib.contextmanager
def rig(*devices, baudrate: int = 9600, timeout: str = "200ms") -> Iterator[tuple[SimulatedLine, SerialBus]]:
    """Devices on a simulated M-Bus line, and an open SerialBus on its pty."""
    values, problems = validate_options(
        SerialBus.options, {"port": "-", "baudrate": baudrate, "parity": "E", "timeout": timeout})
    assert problems == []
    with SimulatedLine(devices, baudrate=baudrate) as line, SerialBus("mbus", {**values, "port": line.path}) as bus:
        yield line, bus


def meter_driver(bus, address: int | str = 5, **options) -> MbusMeter:
    # Built directly: the constructor judges both address forms itself (see test_sample_config).
    return MbusMeter("flat-0602-water", {"address": address, **options}, bus)


def requests(line: SimulatedLine) -> list[tuple[int, int]]:
    """(control, address) of every request on the line."""
    return [(frame.control, frame.address) for frame in map(parse_frame, line.requests)]


def values(measurements) -> dict:
    return {m.quantity: (m.value, m.unit) for m in measurements}


def telegram(meter: MbusWaterMeter, index: int) -> dict:
    """The records of the meter's ``index``-th reply as the codec reads them, by quantity and storage."""
    return {(r.quantity, r.function, r.storage): r.value for r in decode_response(meter.replies[index]).records}


class Flaky:
    """Passes requests to ``meter``; its answers to the first REQ_UD2s are lost or garbled as ``plan`` says."""

    def __init__(self, meter: MbusWaterMeter, *plan: str):
        self.meter = meter
        self.plan = list(plan)

    def answer(self, request: bytes) -> bytes | None:
        reply = self.meter.answer(request)
        if reply is None or len(reply) == 1 or not self.plan:
            return reply
        what = self.plan.pop(0)
        if what == "lose":
            return None
        return reply[:20] + bytes([reply[20] ^ 0xFF]) + reply[21:]


class FrameMeter:
    """A meter that answers REQ_UD2 with ``frame``, at that frame's address, and SND_NKE with an ACK."""

    def __init__(self, frame: bytes):
        self.frame = frame
        self.address = frame[5]

    def answer(self, request: bytes) -> bytes | None:
        frame = parse_frame(request)
        if frame.address != self.address:
            return None
        return ACK if frame.control == SND_NKE else self.frame


def real_meter(name: str) -> FrameMeter:
    """A meter answering with a frame captured from a real one (libmbus test set)."""
    return FrameMeter(bytes.fromhex((DATA / f"{name}.hex").read_text()))


class Endless:
    """A meter at address 5 whose every telegram announces that more records follow."""

    HEADER = bytes.fromhex("78 56 34 12 cc 31 01 07 00 00 00 00")

    def answer(self, request: bytes) -> bytes | None:
        frame = parse_frame(request)
        if frame.address != 5:
            return None
        if frame.control == SND_NKE:
            return ACK
        return long_frame(0x08, 5, 0x72, self.HEADER + bytes.fromhex("04 13 e8 03 00 00 1f"))


class Impostor:
    """Answers requests for address 5 with the telegram of a meter set to address 6."""

    def __init__(self):
        self.meter = MbusWaterMeter(6, "66666666")

    def answer(self, request: bytes) -> bytes | None:
        frame = parse_frame(request)
        if frame.address != 5:
            return None
        return ACK if frame.control == SND_NKE else self.meter.answer(req_ud2(6, bool(frame.control & 0x20)))


class StuckSelected:
    """A meter that never leaves the selected state: it answers every REQ_UD2 to 253."""

    def __init__(self, meter: MbusWaterMeter):
        self.meter = meter

    def answer(self, request: bytes) -> bytes | None:
        frame = parse_frame(request)
        if frame.kind == "short" and frame.address == 253 and frame.control != SND_NKE:
            return self.meter.answer(req_ud2(self.meter.primary, bool(frame.control & 0x20)))
        return self.meter.answer(request)


def test_registry_names_this_class():
    assert driver_class("mbus_meter") is MbusMeter
    assert (MbusMeter.bus_kind, MbusMeter.quantities) == ("serial", ("volume",))


def test_module_doctest():
    assert doctest.testmod(drivers.mbus_meter).failed == 0


# --- configuration, no I/O ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "problems"), [
    ({}, [("address", "is required")]),
    ({"address": 251}, [("address", 'expected a primary address 0–250 or an 8-digit secondary address like '
                                    '"12345678", got 251')]),
    ({"address": -1}, [("address", 'expected a primary address 0–250 or an 8-digit secondary address like '
                                   '"12345678", got -1')]),
    ({"address": True}, [("address", "expected an integer or a string, got true")]),
    ({"address": 5, "records": "volume"}, [("records", 'expected a list, got "volume"')]),
    ({"address": 5, "records": []},
     [("records", 'must name at least one reading, e.g. ["volume"]; leave it out to publish every record')]),
    ({"address": 5, "records": ["volume", "Volume"]},
     [("records", 'entry 2 ("Volume") is not a reading name such as "volume", "volume_flow" or "volume_storage1" '
                  '(lower case letters, digits and "_")')]),
    ({"address": 5, "records": ["volume", 3]},
     [("records", 'entry 2 (3) is not a reading name such as "volume", "volume_flow" or "volume_storage1" '
                  '(lower case letters, digits and "_")')]),
    ({"address": 5, "records": ["volume", "volume_flow", "volume"]}, [("records", 'names "volume" more than once')]),
    ({"address": 5, "retries": 6}, [("retries", "must be at most 5, got 6")]),
    ({"address": 5, "reset": "yes"}, [("reset", 'expected true or false, got "yes"')]),
    ({"adress": 5}, [("address", "is required"), ("adress", "unknown key")]),
])
def test_option_problems_name_their_key(raw, problems):
    assert validate_options(MbusMeter.options, raw)[1] == problems


def test_defaults():
    assert validate_options(MbusMeter.options, {"address": 0}) == (
        {"address": 0, "records": None, "retries": 2, "reset": True}, [])


@pytest.mark.parametrize(("address", "ok"), [
    (0, True), (250, True), ("12345678", True), ("00000001", True),
    (251, False), (253, False), ("1234567", False), ("123456789", False), ("1234567F", False), ("1234 678", False),
    ("１２３４５６７８", False),  # full-width digits: isdigit() says yes, a meter id says no
    (True, False), (5.0, False),
])
def test_both_address_forms_are_judged_without_io(address, ok):
    problems = MbusMeter.check_options({"address": address})
    assert problems == ([] if ok else [("address", problems[0][1])])
    if not ok:
        assert problems[0][1].startswith("expected a primary address 0–250 or an 8-digit secondary address")


def test_constructor_refuses_a_bad_address_without_io(tmp_path):
    never_opened = SerialBus("mbus", {"port": str(tmp_path / "ttyUSB9")})
    with pytest.raises(ValueError, match="address: expected a primary address"):
        MbusMeter("w", {"address": "1234"}, never_opened)
    assert not never_opened.is_open


def test_quantities_known_before_the_meter_answers():
    assert MbusMeter.quantities_for({"address": 5, "records": None}) == ()
    assert MbusMeter.quantities_for({"address": 5, "records": ["volume", "volume_flow"]}) == ("volume", "volume_flow")


def test_sample_config_is_valid_and_builds_both_meters():
    sample = (ROOT / "drivers" / "mbus_meter" / "sample.toml").read_text()
    minimal = (ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text()
    config = validate(tomllib.loads(minimal + sample))
    [bus] = config.buses
    assert (bus.options["baudrate"], bus.options["parity"], bus.options["timeout"]) == (2400, "E", 0.3)
    built = [MbusMeter(s.id, s.options, SerialBus(bus.name, bus.options)) for s in config.sensors]
    assert [(m.target, m.secondary_id, m.selection) for m in built] == [
        (5, None, None), (253, "71203344", ("volume", "volume_flow", "error_flags"))]


def test_sample_config_primary_meter_is_valid():
    raw = tomllib.loads((ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text()
                        + (ROOT / "drivers" / "mbus_meter" / "sample.toml").read_text())
    raw["sensor"] = raw["sensor"][:1]
    config = validate(raw)
    [sensor] = config.sensors
    assert (sensor.driver, sensor.options, sensor.interval) == (
        "mbus_meter", {"address": 5, "records": None, "retries": 2, "reset": True}, 60.0)


def test_config_problems_carry_the_key_path():
    raw = tomllib.loads((ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text() + """
[[bus]]
name = "mbus"
kind = "serial"
port = "/dev/ttyUSB0"
baudrate = 2400
parity = "E"

[[sensor]]
id = "flat-0602-water"
driver = "mbus_meter"
bus = "mbus"
address = 300
records = ["volume", "volume"]
""")
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    assert str(caught.value).splitlines()[1:] == [
        '  sensor[0].address: expected a primary address 0–250 or an 8-digit secondary address like "12345678",'
        ' got 300',
        '  sensor[0].records: names "volume" more than once',
    ]


# --- naming and units, pure --------------------------------------------------------------------------------------

def record(quantity="volume", value=1.0, unit="m3", function="instantaneous", storage=0, tariff=0, subunit=0):
    return Record(quantity, value, unit, function, storage, tariff, subunit)


@pytest.mark.parametrize(("fields", "name"), [
    ({}, "volume"),
    ({"storage": 1}, "volume_storage1"),
    ({"storage": 12, "tariff": 2}, "volume_storage12_tariff2"),
    ({"quantity": "volume_flow", "function": "maximum"}, "volume_flow_maximum"),
    ({"quantity": "volume_flow", "function": "minimum", "subunit": 1}, "volume_flow_minimum_subunit1"),
    ({"quantity": "power", "function": "error"}, "power_during_error"),
    ({"quantity": "energy", "function": "maximum", "storage": 1, "tariff": 3, "subunit": 2},
     "energy_maximum_storage1_tariff3_subunit2"),
])
def test_reading_names(fields, name):
    assert reading_name(record(**fields)) == name


@pytest.mark.parametrize(("quantity", "value", "unit", "expected"), [
    ("volume", 1.234, "m3", (1.234, "m3")),
    ("energy", 3_600_000, "J", (1000.0, "Wh")),
    ("energy", 1e9, "J", (277777.777778, "Wh")),       # 1 GJ
    ("power", 7200, "J/h", (2.0, "W")),
    ("flow_temperature", 212.0, "degF", (100.0, "degC")),
    ("external_temperature", -40.0, "degF", (-40.0, "degC")),
    ("temperature_difference", 9.0, "degF", (5.0, "K")),  # a difference: no 32 °F offset
    ("volume", 1000.0, "US_gal", (3.785411784, "m3")),
    ("volume", 100.0, "ft3", (2.8316846592, "m3")),
    ("volume_flow", 1.0, "US_gal/min", (0.22712470704, "m3/h")),
    ("volume_flow", 1.0, "US_gal/h", (0.003785411784, "m3/h")),
    ("pressure", 2.5, "bar", (2.5, "bar")),
    ("on_time", 3600, "s", (3600, "s")),
])
def test_units_are_brought_to_the_agents(quantity, value, unit, expected):
    assert to_agent_units(quantity, value, unit) == expected


@pytest.mark.parametrize(("fields", "reading"), [
    ({}, True),
    ({"value": None}, True),                                      # marked invalid: a bad reading
    ({"quantity": "error_flags", "value": 4, "unit": ""}, True),
    ({"quantity": "volume_per_hour", "unit": "m3/h"}, True),
    ({"quantity": "fabrication_no", "value": 12345678, "unit": ""}, False),
    ({"quantity": "date", "value": "2026-10-31", "unit": ""}, False),
    ({"quantity": "date", "value": None, "unit": ""}, False),     # an invalid date is still no reading
    ({"quantity": "volume_first_upper_limit_exceed_begin", "value": None, "unit": ""}, False),
    ({"quantity": "manufacturer_specific", "value": 17, "unit": ""}, False),
    ({"quantity": "unknown_vif_0x7B", "value": 17, "unit": ""}, False),
    ({"quantity": "volume_unknown_vife_0x3D", "value": 17, "unit": ""}, False),
    ({"quantity": "plain_text", "value": "09LA076755", "unit": "cust. ID"}, False),
    ({"quantity": "plain_text", "value": 2516, "unit": "bat. time"}, True),
])
def test_what_counts_as_a_reading(fields, reading):
    assert is_reading(record(**fields)) is reading


# --- real meters' frames through the driver ---------------------------------------------------------------------

def test_elster_heat_meter_every_numeric_record_and_invalid_ones_bad():
    with rig(real_meter("ELS_Elster-F96-Plus")) as (line, bus), meter_driver(bus, address=0) as driver:
        measurements = driver.read()
    assert requests(line) == [(SND_NKE, 0), (REQ_UD2_FCB1, 0)]
    assert [(m.quantity, m.value, m.unit, m.quality, m.reason) for m in measurements] == [
        ("energy", 0, "Wh", "good", None),
        ("energy_tariff1", 0, "Wh", "good", None),
        ("volume_tariff2", 0.0, "m3", "good", None),
        ("volume", 0.0, "m3", "good", None),
        ("power_during_error", None, "W", "bad", "invalid_value"),        # BCD "DDEBBD": no number
        ("volume_flow_during_error", None, "m3/h", "bad", "invalid_value"),
        ("flow_temperature", 22.7, "degC", "good", None),
        ("return_temperature", 22.6, "degC", "good", None),
        ("temperature_difference", 0.1, "K", "good", None),
        ("operating_time", 730 * 86400, "s", "good", None),
        ("energy_storage1", 0, "Wh", "good", None),
        ("volume_storage1", 0.0, "m3", "good", None),
        ("energy_storage1_tariff1", 0, "Wh", "good", None),
        ("volume_storage1_tariff2", 0.0, "m3", "good", None),
    ]


def test_engelmann_water_meter_storages_peak_flow_and_error_flags():
    with rig(real_meter("EFE_Engelmann-WaterStar")) as (_, bus), meter_driver(bus, address=0x0B) as driver:
        found = values(driver.read())
    assert found == {
        "volume": (0.332, "m3"), "volume_storage1": (0.331, "m3"), "volume_storage2": (0.332, "m3"),
        "volume_flow": (0.0, "m3/h"), "volume_flow_maximum": (2.07, "m3/h"),
        "on_time": (1191 * 86400, "s"), "error_flags": (0, None),
        "volume_per_input_pulse_0": (8e-06, "m3"),
    }


def test_itron_module_skips_text_dates_and_manufacturer_data():
    with rig(real_meter("ACW_Itron-CYBLE-M-Bus-14")) as (_, bus), meter_driver(bus, address=1) as driver:
        found = values(driver.read())
    assert found == {"plain_text": (2516, "bat. time"), "volume": (0.031, "m3"), "volume_storage1": (0.031, "m3")}


def test_two_records_with_one_name_keep_the_first():
    header = bytes.fromhex("78 56 34 12 cc 31 01 07 00 00 00 00")
    records = bytes.fromhex("04 13 39 30 00 00" "04 13 01 00 00 00" "84 10 13 02 00 00 00")  # 12.345, 0.001, tariff 1
    with rig(FrameMeter(long_frame(0x08, 5, 0x72, header + records))) as (_, bus), meter_driver(bus) as driver:
        assert values(driver.read()) == {"volume": (12.345, "m3"), "volume_tariff1": (0.002, "m3")}


# --- the simulated meter: primary addressing and the frame-count bit ------------------------------------------

def test_primary_meter_every_record_in_agent_units_and_the_fcb_toggles():
    meter = MbusWaterMeter(5, "12345678", start_m3=123.456, flow=6.0, temperature_c=12.5, on_hours=10)
    with rig(meter, baudrate=2400, timeout="300ms") as (line, bus), meter_driver(bus) as driver:
        first = values(driver.read())
        driver.read()
        driver.read()
    assert requests(line) == [(SND_NKE, 5), (REQ_UD2_FCB1, 5), (REQ_UD2_FCB0, 5), (REQ_UD2_FCB1, 5)]
    assert list(first) == ["volume", "volume_storage1", "volume_flow", "volume_flow_maximum", "flow_temperature",
                           "on_time", "error_flags"]
    assert first["volume"][0] == pytest.approx(123.456, abs=0.002) and first["volume"][1] == "m3"
    assert first["volume_storage1"] == (123.456, "m3")
    assert first["volume_flow"] == first["volume_flow_maximum"] == (0.36, "m3/h")
    assert (first["flow_temperature"], first["on_time"], first["error_flags"]) == (
        (12.5, "degC"), (36000, "s"), (0, None))
    assert [decode_response(reply).header.access_no for reply in meter.replies] == [1, 2, 3]


def test_volume_grows_between_reads():
    meter = MbusWaterMeter(5, "12345678", start_m3=1.0, flow=600.0)  # 10 L/s
    with rig(meter) as (_, bus), meter_driver(bus) as driver:
        before = values(driver.read())["volume"][0]
        time.sleep(0.2)  # water has to run for the register to move; nothing to poll for
        after = values(driver.read())["volume"][0]
    assert round((after - before) * 1000) >= 2  # litres: 0.2 s at 10 L/s, the register counts whole litres


def test_error_flags_and_status_of_a_meter_in_trouble():
    meter = MbusWaterMeter(5, "12345678")
    meter.error_flags = 0x12
    with rig(meter) as (_, bus), meter_driver(bus) as driver:
        assert values(driver.read())["error_flags"] == (0x12, None)


def test_a_lost_answer_is_asked_again_with_the_same_bit_and_gets_the_same_telegram():
    meter = MbusWaterMeter(5, "12345678", flow=600.0)
    with rig(Flaky(meter, "lose"), timeout="100ms") as (line, bus), meter_driver(bus, retries=1) as driver:
        got = values(driver.read())
        driver.read()
    assert requests(line) == [(SND_NKE, 5), (REQ_UD2_FCB1, 5), (REQ_UD2_FCB1, 5), (REQ_UD2_FCB0, 5)]
    assert meter.replies[0] == meter.replies[1]  # the repeat is the lost telegram, byte for byte
    assert got["volume"] == (telegram(meter, 1)[("volume", "instantaneous", 0)], "m3")
    assert decode_response(meter.replies[2]).header.access_no == 2


def test_a_garbled_answer_is_asked_again_and_the_repeat_is_used():
    meter = MbusWaterMeter(5, "12345678")
    with rig(Flaky(meter, "garble")) as (line, bus), meter_driver(bus, retries=1) as driver:
        assert values(driver.read())["volume"] == (0.0, "m3")
    assert requests(line) == [(SND_NKE, 5), (REQ_UD2_FCB1, 5), (REQ_UD2_FCB1, 5)]


def test_multi_telegram_answers_are_collected():
    meter = MbusWaterMeter(5, "12345678", start_m3=7.0, telegrams=3)
    with rig(meter) as (line, bus), meter_driver(bus) as driver:
        first = values(driver.read())
        second = values(driver.read())
    assert list(first) == list(second) == ["volume", "volume_storage1", "volume_flow", "volume_flow_maximum",
                                           "flow_temperature", "on_time", "error_flags"]
    assert first["volume"] == (7.0, "m3")
    assert requests(line) == [(SND_NKE, 5), (REQ_UD2_FCB1, 5), (REQ_UD2_FCB0, 5), (REQ_UD2_FCB1, 5),
                              (REQ_UD2_FCB0, 5), (REQ_UD2_FCB1, 5), (REQ_UD2_FCB0, 5)]


def test_a_meter_that_never_stops_announcing_more_is_a_frame_error():
    with rig(Endless()) as (line, bus), meter_driver(bus) as driver:
        with pytest.raises(FrameError, match=f"still announced more records after {MAX_TELEGRAMS} telegrams"):
            driver.read()
    assert requests(line).count((REQ_UD2_FCB1, 5)) + requests(line).count((REQ_UD2_FCB0, 5)) == MAX_TELEGRAMS


def test_records_selection_in_its_order_and_a_missing_name_is_bad(caplog):
    meter = MbusWaterMeter(5, "12345678", start_m3=3.0)
    selection = ["flow_temperature", "volume", "volume_storge1"]
    with rig(meter) as (_, bus), meter_driver(bus, records=selection) as driver:
        with caplog.at_level(logging.WARNING, logger="linli.drivers.mbus_meter"):
            found = driver.read()
            driver.read()
    assert [(m.quantity, m.value, m.quality, m.reason) for m in found] == [
        ("flow_temperature", 14.5, "good", None), ("volume", 3.0, "good", None),
        ("volume_storge1", None, "bad", "missing_record")]
    [warning] = caplog.records  # once, not at every read
    assert warning.getMessage() == (
        "flat-0602-water: M-Bus address 5 does not send volume_storge1; it sends volume, volume_storage1,"
        " volume_flow, volume_flow_maximum, flow_temperature, on_time, error_flags")


# --- secondary addressing --------------------------------------------------------------------------------------

def test_secondary_meters_share_a_line_with_a_primary_one():
    first = MbusWaterMeter(0, "11111111", start_m3=1.0)
    second = MbusWaterMeter(0, "22222222", start_m3=2.0)
    primary = MbusWaterMeter(9, "99999999", start_m3=9.0)
    with rig(first, second, primary) as (line, bus):
        one, two = meter_driver(bus, "11111111"), meter_driver(bus, "22222222")
        three = meter_driver(bus, 9)
        for driver in (one, two, three):
            driver.open()
        found = [values(driver.read())["volume"][0] for driver in (one, two, three, two, one)]
    assert found == [1.0, 2.0, 9.0, 2.0, 1.0]
    sent = requests(line)
    # Open: select, then SND_NKE to 253 (resets the meter's frame-count bit and ends its selection).
    assert sent[:4] == [(SND_UD, 253), (SND_NKE, 253), (SND_UD, 253), (SND_NKE, 253)]
    # Every read selects first, then asks 253.
    assert sent[5:9] == [(SND_UD, 253), (REQ_UD2_FCB1, 253), (SND_UD, 253), (REQ_UD2_FCB1, 253)]
    selected = [parse_frame(r).data[:4].hex() for r in line.requests if parse_frame(r).kind == "long"]
    assert selected == ["11111111", "22222222"] + ["11111111", "22222222", "22222222", "11111111"]
    # Selecting one meter deselected the other: only the last one selected still is.
    assert (first.selected, second.selected) == (True, False)


def test_a_meter_still_selected_is_caught_by_its_id():
    stuck = MbusWaterMeter(0, "11111111")
    wanted = MbusWaterMeter(0, "22222222")
    with rig(StuckSelected(stuck), wanted) as (_, bus), meter_driver(bus, "22222222", retries=0) as driver:
        with pytest.raises(FrameError, match="the M-Bus meter selected as 22222222 answered with id 11111111"):
            driver.read()


# --- faults: silent, garbling, noisy, impostor -------------------------------------------------------------------

def test_silent_meter_three_attempts_then_one_per_read_while_failing_then_fresh_data():
    meter = MbusWaterMeter(5, "12345678", start_m3=4.0)
    with rig(meter) as (line, bus), meter_driver(bus) as driver:
        driver.read()
        line.set_fault(meter, "silent")
        before = len(line.requests)
        with pytest.raises(TransportTimeout) as caught:
            driver.read()
        assert str(caught.value) == "no answer from M-Bus address 5 within 0.2 s (after 3 attempts)"
        assert requests(line)[before:] == [(REQ_UD2_FCB0, 5)] * 3
        driver.failing = True  # what the bus thread sets after a failed read
        before = len(line.requests)
        with pytest.raises(TransportTimeout, match=r"^no answer from M-Bus address 5 within 0.2 s$"):
            driver.read()
        # One request: the reset that makes the next answer fresh. A dead meter costs one timeout per sweep.
        assert requests(line)[before:] == [(SND_NKE, 5)]
        line.set_fault(meter, None)
        before = len(line.requests)
        assert values(driver.read())["volume"] == (4.0, "m3")
    assert requests(line)[before:] == [(SND_NKE, 5), (REQ_UD2_FCB1, 5)]


def test_silent_secondary_meter_costs_one_request_while_failing():
    meter = MbusWaterMeter(0, "12345678")
    with rig(meter) as (line, bus), meter_driver(bus, "12345678") as driver:
        line.set_fault(meter, "silent")
        driver.failing = True
        before = len(line.requests)
        with pytest.raises(TransportTimeout) as caught:
            driver.read()
    assert str(caught.value) == ("no M-Bus meter answered the selection of secondary address 12345678"
                                 " within 0.2 s")
    assert requests(line)[before:] == [(SND_UD, 253)]


def test_secondary_meter_missing_from_the_line_fails_open_naming_its_id():
    with rig(MbusWaterMeter(0, "11111111")) as (line, bus):
        driver = meter_driver(bus, "33333333", retries=1)
        with pytest.raises(TransportTimeout, match="secondary address 33333333 within 0.2 s \\(after 2 attempts\\)"):
            driver.open()
    assert requests(line) == [(SND_UD, 253)] * 2


def test_a_silent_meter_opens_without_the_reset_and_fails_at_its_first_read():
    meter = MbusWaterMeter(5, "12345678")
    with rig(meter) as (line, bus):
        line.set_fault(meter, "silent")
        driver = meter_driver(bus)
        driver.open()  # an unacknowledged SND_NKE is not fatal: some meters never acknowledge it
        assert requests(line) == [(SND_NKE, 5)] * 3
        with pytest.raises(TransportTimeout, match=r"\(after 3 attempts\)"):
            driver.read()
        assert requests(line)[3:] == [(REQ_UD2_FCB1, 5)] * 3
        driver.failing = True  # as the bus thread marks it: from now on one request per read, no reset
        with pytest.raises(TransportTimeout):
            driver.read()
        assert requests(line)[6:] == [(REQ_UD2_FCB1, 5)]
        meter_driver(bus, reset=False).open()
        assert len(line.requests) == 7


class NoNke:
    """A meter (or a converter's built-in slave) that answers REQ_UD2 but never acknowledges SND_NKE."""

    def __init__(self, meter: MbusWaterMeter):
        self.meter = meter

    def answer(self, request: bytes) -> bytes | None:
        return None if request[:2] == bytes((0x10, 0x40)) else self.meter.answer(request)


def test_a_meter_that_never_acknowledges_snd_nke_is_read_and_not_reset_again():
    meter = MbusWaterMeter(5, "12345678", start_m3=2.5)
    with rig(NoNke(meter)) as (line, bus), meter_driver(bus, retries=0) as driver:
        assert values(driver.read())["volume"] == (2.5, "m3")
        driver._resync = True  # as after a failed read
        assert values(driver.read())["volume"] == (2.5, "m3")
    assert [request for request, _ in requests(line)].count(SND_NKE) == 1


def test_garbling_meter_is_a_frame_error_after_its_retries():
    meter = MbusWaterMeter(5, "12345678")
    with rig(meter) as (line, bus), meter_driver(bus) as driver:
        line.set_fault(meter, "garble")
        with pytest.raises(FrameError) as caught:
            driver.read()
    assert str(caught.value).startswith("M-Bus address 5 answered with a broken frame: M-Bus checksum is")
    assert str(caught.value).endswith("(after 3 attempts)")
    assert requests(line)[1:] == [(REQ_UD2_FCB1, 5)] * 3


def test_line_noise_before_each_answer_is_skipped():
    meter = MbusWaterMeter(5, "12345678", start_m3=8.0)
    with rig(meter) as (line, bus):
        line.set_fault(meter, "noise")
        with meter_driver(bus) as driver:
            assert values(driver.read())["volume"] == (8.0, "m3")


def test_an_answer_from_the_wrong_address_is_refused():
    with rig(Impostor()) as (_, bus), meter_driver(bus, retries=0) as driver:
        with pytest.raises(FrameError, match="answer to REQ_UD2 for M-Bus address 5 came from address 6"):
            driver.read()


# --- on the bus thread, next to healthy meters ------------------------------------------------------------------

def test_a_meter_going_silent_mid_run_does_not_silence_its_neighbours():
    silent = MbusWaterMeter(5, "55555555", start_m3=5.0)
    healthy = [MbusWaterMeter(6, "66666666", start_m3=6.0), MbusWaterMeter(0, "77777777", start_m3=7.0)]
    emitted: list[dict] = []

    def count(sensor: str, quality: str) -> int:
        return sum(1 for r in list(emitted) if r["sensor"] == sensor and r["quality"] == quality
                   and r["quantity"] == "volume")

    with rig(silent, *healthy) as (line, bus):
        slots = [SensorSlot("silent", meter_driver(bus, 5), interval=0.1),
                 SensorSlot("primary", meter_driver(bus, 6), interval=0.1),
                 SensorSlot("secondary", meter_driver(bus, "77777777"), interval=0.1)]
        worker = BusWorker(bus, slots, lambda record, state: emitted.append(record),
                           stamp=lambda: {"mono": time.monotonic()})
        worker.start()
        try:
            deadline = time.monotonic() + 20.0
            while count("silent", "good") < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            line.set_fault(silent, "silent")
            good_before = {name: count(name, "good") for name in ("primary", "secondary")}
            while (count("silent", "bad") < 3 or min(count(n, "good") - good_before[n] for n in good_before) < 5) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            worker.stop()
        status = worker.status()["sensors"]
    assert count("silent", "bad") >= 3
    assert all(count(name, "good") - good_before[name] >= 5 for name in good_before)
    reads, failures = status["silent"]["reads"], status["silent"]["failures"]
    to_silent = sum(1 for _, address in requests(line) if address == 5)
    # SND_NKE at open, one REQ_UD2 per good read; the first failed read 1 + 2 retries; each later one a single request.
    assert to_silent == 1 + reads + 3 + (failures - 1)
    bad = next(r for r in emitted if r["sensor"] == "silent" and r["quality"] == "bad")
    assert (bad["reason"], bad["value"]) == ("timeout", None)
    assert bad["error"] == "no answer from M-Bus address 5 within 0.2 s (after 3 attempts)"
    assert {r["value"] for r in emitted if r["sensor"] == "secondary" and r["quantity"] == "volume"} == {7.0}
