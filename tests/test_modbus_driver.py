"""The general `modbus` driver end to end: SerialBus over a pty to pymodbus's own serial server (the simulator)."""

from __future__ import annotations

import doctest
import math
import tomllib
from pathlib import Path

import pytest

import drivers.modbus
from drivers.codecs.modbus import ModbusException
from drivers.errors import DeviceFault, TransportTimeout
from drivers.modbus import Modbus
from drivers.modbus.registers import Block
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.serial import SerialBus
from edge.agent import Agent
from edge.config import load_config, validate
from edge.errors import ConfigError
from edge.simulate.modbus_device import FlowMeterSim, ModbusDeviceSim, encode, place
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, config_text

UNIT = 3


def serial_bus(port: str, **options) -> SerialBus:
    values, problems = validate_options(SerialBus.options, {"port": port, "timeout": "1s", **options})
    assert problems == []
    return SerialBus("rs485-1", values)


def device(bus, *entries, **options) -> Modbus:
    values, problems = validate_options(Modbus.options, {"address": UNIT, "registers": list(entries), **options})
    assert problems == []
    assert Modbus.check_options(values) == []
    return Modbus("pump-room-flow", values, bus)


def entry(quantity: str, register: int, type_name: str, **keys) -> dict:
    return {"quantity": quantity, "unit": keys.pop("unit", "1"), "register": register, "type": type_name, **keys}


def readings(driver: Modbus) -> dict[str, object]:
    return {m.quantity: m.value for m in driver.read()}


def test_registry_names_this_class():
    assert driver_class("modbus") is Modbus
    assert (Modbus.name, Modbus.bus_kind) == ("modbus", "serial")


# --- every type, both word orders, both tables -------------------------------------------------------------

ALL_TYPES_HOLDING = {
    0x00: 0xFB2E,                              # int16 -1234
    0x01: 0xFDE8,                              # uint16 65000
    0x02: 0xF8A4, 0x03: 0x32EB,                # int32 -123456789, high word first
    0x04: 0x32EB, 0x05: 0xF8A4,                # the same, low word first
    0x06: 0xEE6B, 0x07: 0x2800,                # uint32 4000000000, high word first
    0x08: 0x2800, 0x09: 0xEE6B,                # the same, low word first
    0x0A: 0x4148, 0x0B: 0x0000,                # float32 12.5, high word first
    0x0C: 0xCCCD, 0x0D: 0xBDCC,                # float32 -0.1, low word first
}
ALL_TYPES_INPUT = {
    0x00: 4242,                                # uint16, with one decimal from input register 1
    0x01: 1,
    **place(0x02, 7.25, "float32", "little"),  # the same numbers as holding 0x02, another table
}
ALL_TYPES = [
    entry("i16", 0x00, "int16"),
    entry("u16", 0x01, "uint16"),
    entry("i32_big", 0x02, "int32"),
    entry("i32_little", 0x04, "int32", word_order="little"),
    entry("u32_big", 0x06, "uint32", word_order="big"),
    entry("u32_little", 0x08, "uint32", word_order="little"),
    entry("f32_big", 0x0A, "float32"),
    entry("f32_little", 0x0C, "float32", word_order="little"),
    entry("in_u16", 0x00, "uint16", table="input", decimals_register=0x01),
    entry("in_f32", 0x02, "float32", table="input", word_order="little"),
]


@pytest.fixture
def all_types(tmp_path):
    with ModbusDeviceSim(UNIT, ALL_TYPES_HOLDING, ALL_TYPES_INPUT, link_dir=tmp_path) as sim:
        yield sim


def test_every_type_and_word_order_from_both_tables(all_types):
    with serial_bus(all_types.port) as bus, device(bus, *ALL_TYPES) as driver:
        got = driver.read()
    assert {m.quantity: m.value for m in got} == {
        "i16": -1234.0, "u16": 65000.0,
        "i32_big": -123456789.0, "i32_little": -123456789.0,
        "u32_big": 4000000000.0, "u32_little": 4000000000.0,
        "f32_big": 12.5, "f32_little": -0.1,
        "in_u16": 424.2, "in_f32": 7.25,
    }
    assert {m.quality for m in got} == {"good"}
    assert [m.quantity for m in got] == [e["quantity"] for e in ALL_TYPES]  # in config order
    # One request per table: holding 0x00–0x0D, input 0x00–0x03.
    assert all_types.requests == [(3, 0x00, 14), (4, 0x00, 4)]


def test_units_scale_and_offset_are_applied(all_types):
    with serial_bus(all_types.port) as bus:
        driver = device(bus, entry("flow", 0x0A, "float32", unit="m3/h", scale=0.2, offset=-1.0),
                        entry("total", 0x06, "uint32", unit="m3", scale=0.001),
                        entry("temperature", 0x01, "uint16", unit="degC", decimals=3, offset=-40.0))
        got = driver.read()
    assert [(m.quantity, m.value, m.unit) for m in got] == [
        ("flow", 1.5, "m3/h"), ("total", 4000000.0, "m3"), ("temperature", 25.0, "degC")]


# --- decimals in a register ------------------------------------------------------------------------------

@pytest.fixture
def level_transmitter(tmp_path):
    registers = {0x03: 2, 0x04: 12345, 0x05: encode(-500, "int16")[0]}
    with ModbusDeviceSim(UNIT, registers, link_dir=tmp_path) as sim:
        yield sim


def test_decimals_come_from_the_device(level_transmitter):
    sim = level_transmitter
    with serial_bus(sim.port) as bus:
        driver = device(bus, entry("level", 0x04, "int16", unit="m", decimals_register=0x03),
                        entry("head", 0x05, "int16", unit="m", decimals_register=0x03, scale=0.1))
        assert readings(driver) == {"level": 123.45, "head": -0.5}
        sim.set(0x03, 3)
        assert readings(driver) == {"level": 12.345, "head": -0.05}
    assert sim.requests == [(3, 0x03, 3), (3, 0x03, 3)]  # decimals and values in one answer


def test_impossible_decimals_are_a_device_fault(level_transmitter):
    level_transmitter.set(0x03, 7)
    with serial_bus(level_transmitter.port) as bus:
        driver = device(bus, entry("level", 0x04, "int16", unit="m", decimals_register=0x03))
        with pytest.raises(DeviceFault) as err:
            driver.read()
    assert str(err.value) == ("device 3 reports 7 decimal places in register 0x0003; expected 0–6"
                              " — check decimals_register")
    assert err.value.reason == "device_fault"


# --- merged reads ---------------------------------------------------------------------------------------------

SPREAD = [
    entry("flow", 0x10, "float32", unit="m3/h"),
    entry("total", 0x12, "uint32", unit="L"),
    entry("status", 0x1A, "uint16"),            # 6 unused registers after total: bridged
    entry("alarm_count", 0x40, "uint16"),       # far away: a read of its own
    entry("supply", 0x05, "uint16", table="input"),
]


def spread_device(tmp_path, with_gap: bool) -> ModbusDeviceSim:
    holding = {**place(0x10, 2.5, "float32"), **place(0x12, 70000, "uint32"), 0x1A: 1, 0x40: 9}
    if with_gap:
        holding.update(dict.fromkeys(range(0x14, 0x1A), 0))
    return ModbusDeviceSim(UNIT, holding, {0x05: 230}, link_dir=tmp_path)


def test_nearby_registers_are_read_in_one_request(tmp_path):
    with spread_device(tmp_path, with_gap=True) as sim, serial_bus(sim.port) as bus:
        driver = device(bus, *SPREAD)
        for _ in range(2):
            assert readings(driver) == {"flow": 2.5, "total": 70000.0, "status": 1.0, "alarm_count": 9.0,
                                        "supply": 230.0}
    assert sim.requests == [(3, 0x10, 11), (3, 0x40, 1), (4, 0x05, 1)] * 2


def test_a_refused_gap_is_read_around_from_then_on(tmp_path):
    # The device lacks 0x14–0x19: a read across them is answered with "illegal data address".
    with spread_device(tmp_path, with_gap=False) as sim, serial_bus(sim.port) as bus:
        driver = device(bus, *SPREAD)
        first = readings(driver)
        second = readings(driver)
    assert first == second == {"flow": 2.5, "total": 70000.0, "status": 1.0, "alarm_count": 9.0, "supply": 230.0}
    pieces = [(3, 0x10, 4), (3, 0x1A, 1), (3, 0x40, 1), (4, 0x05, 1)]
    assert sim.requests == [(3, 0x10, 11), *pieces, *pieces]
    assert driver.plan[:2] == [Block("holding", 0x10, 4, ((0x10, 4),)), Block("holding", 0x1A, 1, ((0x1A, 1),))]


# --- exceptions, busy devices, silence ------------------------------------------------------------------------

def test_an_exception_names_the_registers_of_the_request(tmp_path):
    with spread_device(tmp_path, with_gap=True) as sim, serial_bus(sim.port) as bus:
        sim.fail_with(2, registers=[0x40])
        driver = device(bus, *SPREAD)
        with pytest.raises(DeviceFault) as err:
            driver.read()
        assert str(err.value) == "device 3 answered Modbus exception 2 (illegal data address) for register 0x0040"
        assert err.value.reason == "device_fault"
        sim.heal()
        assert readings(driver)["alarm_count"] == 9.0


def test_a_register_the_device_lacks_is_named(tmp_path):
    with spread_device(tmp_path, with_gap=True) as sim, serial_bus(sim.port) as bus:
        driver = device(bus, entry("flow", 0x10, "float32"), entry("ghost", 0x30, "float32"))
        with pytest.raises(DeviceFault, match=r"^device 3 answered Modbus exception 2 \(illegal data address\) "
                                              r"for registers 0x0030–0x0031$"):
            driver.read()
    assert sim.requests == [(3, 0x10, 2), (3, 0x30, 2)]


def test_other_exceptions_are_definite(tmp_path):
    with spread_device(tmp_path, with_gap=True) as sim, serial_bus(sim.port) as bus:
        sim.fail_with(4)
        with pytest.raises(DeviceFault, match=r"exception 4 \(server device failure\) for registers 0x0010–0x001A"):
            device(bus, *SPREAD).read()
    assert sim.requests == [(3, 0x10, 11)]  # neither retried nor split: only "illegal data address" blames the gap


def test_a_busy_device_is_retried(tmp_path):
    with spread_device(tmp_path, with_gap=True) as sim, serial_bus(sim.port) as bus:
        sim.fail_with(6)
        driver = device(bus, *SPREAD, retries=2)
        with pytest.raises(ModbusException, match=r"exception 6 \(server device busy\)") as err:
            driver.read()
        assert err.value.code == 6
        assert sim.requests == [(3, 0x10, 11)] * 3
        assert len(driver.plan) == 3  # busy says nothing about gaps: the read is not split


def test_a_failing_device_gets_one_attempt(tmp_path):
    with spread_device(tmp_path, with_gap=True) as sim, serial_bus(sim.port, timeout="100ms") as bus:
        driver = device(bus, *SPREAD, retries=2)
        driver.failing = True
        sim.fail_with(6)
        with pytest.raises(ModbusException):
            driver.read()
        assert len(sim.requests) == 1
        sim.heal()
        sim.cut_wire()
        with pytest.raises(TransportTimeout, match="^no answer from Modbus unit 3 within 0.1 s$"):
            driver.read()
        sim.mend_wire()
        driver.failing = False
        assert readings(driver)["flow"] == 2.5


# --- values that are no numbers --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_float_that_is_no_number_is_a_bad_reading_of_its_quantity_only(tmp_path, bad):
    holding = {**place(0x10, bad, "float32"), **place(0x12, 70000, "uint32")}
    with ModbusDeviceSim(UNIT, holding, link_dir=tmp_path) as sim, serial_bus(sim.port) as bus:
        flow, total = device(bus, entry("flow", 0x10, "float32", unit="m3/h"),
                             entry("total", 0x12, "uint32", unit="L")).read()
    assert (flow.quantity, flow.value, flow.unit, flow.quality, flow.reason) == (
        "flow", None, "m3/h", "bad", "invalid_value")
    assert (total.quantity, total.value, total.quality, total.reason) == ("total", 70000.0, "good", None)


# --- configuration -------------------------------------------------------------------------------------------

GATEWAY = '[gateway]\nid = "gw-0042"\ngrid = "shimen2/xinfukangli/b07"\n'
BUS = '[[bus]]\nname = "rs485-1"\nkind = "serial"\nport = "/dev/ttyUSB0"\n'
SENSOR = '[[sensor]]\nid = "pump-room-flow"\ndriver = "modbus"\nbus = "rs485-1"\naddress = 3\n'
FLOW = '[[sensor.registers]]\nquantity = "flow"\nunit = "m3/h"\nregister = 0x10\ntype = "float32"\n'
TOTAL = '[[sensor.registers]]\nquantity = "total"\nunit = "L"\nregister = 0x12\ntype = "uint32"\n'


def config_problems(text: str) -> list[str]:
    try:
        validate(tomllib.loads(text))
    except ConfigError as err:
        return err.problems
    return []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SENSOR, ["sensor[0].registers: is required"]),
        (SENSOR + "registers = 5\n", ["sensor[0].registers: expected a list, got 5"]),
        (SENSOR + "registers = []\n", ["sensor[0].registers: must list at least one register ([[sensor.registers]])"]),
        (SENSOR + FLOW + TOTAL.replace('"uint32"', '"uint23"'),
         ['sensor[0].registers[1].type: expected one of "int16", "uint16", "int32", "uint32", "float32", '
          'got "uint23"']),
        (SENSOR + FLOW + TOTAL.replace('"total"', '"flow"'),
         ['sensor[0].registers[1].quantity: "flow" is already used by registers[0]']),
        (SENSOR + FLOW + 'decimals = 1\ndecimals_register = 3\n',
         ['sensor[0].registers[0].decimals: conflicts with "decimals_register": give a fixed value or a register, '
          'not both']),
        (SENSOR + FLOW.replace('unit = "m3/h"\n', "") + TOTAL.replace("type", "tpye"),
         ["sensor[0].registers[0].unit: is required", "sensor[0].registers[1].type: is required",
          'sensor[0].registers[1].tpye: unknown key; did you mean "type"?']),
        (SENSOR + FLOW + TOTAL.replace("0x12", "0x11"),
         ["sensor[0].registers[1].register: reads holding 0x0011–0x0012 as uint32 (big word order), overlapping "
          "registers[0] (holding 0x0010–0x0011 as float32 (big word order)); entries may share registers only "
          "when they read them alike (same first register and type)"]),
        (SENSOR.replace("address = 3", "address = 248") + FLOW, ["sensor[0].address: must be at most 247, got 248"]),
    ],
)
def test_config_problems_name_the_key_path(text, expected):
    assert config_problems(GATEWAY + BUS + text) == expected


def rule(quantity: str) -> str:
    return (f'[[rule]]\nid = "no-flow"\nsensor = "pump-room-flow"\nquantity = "{quantity}"\nkind = "threshold"\n'
            "below = 0.5\n")


def test_rules_may_use_the_quantities_of_the_map():
    assert Modbus.quantities_for({"registers": [{"quantity": "flow"}, {"quantity": "total"}]}) == ("flow", "total")
    assert config_problems(GATEWAY + BUS + SENSOR + FLOW + TOTAL + rule("total")) == []
    assert config_problems(GATEWAY + BUS + SENSOR + FLOW + TOTAL + rule("pressure")) == [
        'rule[0].quantity: sensor "pump-room-flow" does not report "pressure"; it reports "flow", "total"']


def test_an_instance_knows_its_quantities(tmp_path):
    driver = device(serial_bus(str(tmp_path / "ttyUSB9")), entry("flow", 0x10, "float32"),
                    entry("total", 0x12, "uint32"))
    assert driver.quantities == ("flow", "total")
    assert Modbus.quantities == ()


def test_constructor_refuses_a_bad_map_without_io(tmp_path):
    never_opened = serial_bus(str(tmp_path / "ttyUSB9"))
    values, _ = validate_options(Modbus.options, {"address": 3, "registers": [entry("flow", 0x10, "float64")]})
    with pytest.raises(ValueError, match=r'^registers\[0\].type: expected one of "int16"'):
        Modbus("p", values, never_opened)
    assert not never_opened.is_open


# --- the sample config against the flow meter simulator -----------------------------------------------------

SAMPLE = Path(drivers.modbus.__file__).with_name("sample.toml")


def test_sample_config_is_valid_and_reads_the_flow_meter(tmp_path):
    raw = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    config = validate({"gateway": {"id": "gw-0042", "grid": "b07"}, **raw})
    [sensor] = config.sensors
    with FlowMeterSim(sensor.options["address"], 36.0, start_litres=1_250_000, link_dir=tmp_path) as meter:
        with serial_bus(meter.port) as bus:
            driver = Modbus(sensor.id, sensor.options, bus)
            before = meter.elapsed()
            flow, volume = driver.read()
            after = meter.elapsed()
    assert (flow.quantity, flow.value, flow.unit) == ("volume_flow", 36.0, "m3/h")
    # 36 m3/h is 10 L/s, counted by the meter since it started.
    assert (volume.quantity, volume.unit) == ("volume", "m3")
    assert 1250 + (10 * before - 1) / 1000 <= volume.value <= 1250 + 10 * after / 1000


# --- through the agent to a real broker ------------------------------------------------------------------------

FLOW_METER_SENSOR = """
[[bus]]
name = "rs485-2"
kind = "serial"
port = "{port}"
timeout = "200ms"

[[sensor]]
id = "pump-room-flow"
driver = "modbus"
bus = "rs485-2"
address = 3
interval = "200ms"
retries = 0

[[sensor.registers]]
quantity = "volume_flow"
unit = "m3/h"
register = 0x0010
type = "float32"
word_order = "little"

[[sensor.registers]]
quantity = "volume"
unit = "m3"
register = 0x0012
type = "uint32"
scale = 0.001
"""


def flow_readings(sub, quantity: str, quality: str | None = None) -> list[dict]:
    return [r for m in sub.messages("telemetry") for r in m.payload["records"]
            if r.get("sensor") == "pump-room-flow" and r.get("quantity") == quantity
            and (quality is None or r["quality"] == quality)]


def test_flow_meter_end_to_end_through_the_agent(tmp_path, broker, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    for folder in ("pressure", "flow"):
        (tmp_path / folder).mkdir()
    with PressureTransmitterSim(1, 0.35, link_dir=tmp_path / "pressure") as transmitter, \
            FlowMeterSim(3, 36.0, start_litres=1_250_000, link_dir=tmp_path / "flow") as meter:
        path = tmp_path / "edge.toml"
        path.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db", serial_port=transmitter.port,
                                    extra_sensors=FLOW_METER_SENSOR.format(port=meter.port)))
        agent = Agent(load_config(path))
        agent.start()
        try:
            sub.wait_for(lambda _m: len(flow_readings(sub, "volume", "good")) >= 2, 15, "two good volumes")
            meter.set(FlowMeterSim.REG_FLOW, encode(float("nan"), "float32", "little")[0])
            meter.set(FlowMeterSim.REG_FLOW + 1, encode(float("nan"), "float32", "little")[1])
            sub.wait_for(lambda _m: flow_readings(sub, "volume_flow", "bad"), 15, "a bad flow reading")
            meter.cut_wire()
            sub.wait_for(lambda _m: any(r["reason"] == "timeout" for r in flow_readings(sub, "volume", "bad")), 15,
                         "a timeout of the silent meter")
        finally:
            agent.stop(drain_timeout=5)
    good_flows = flow_readings(sub, "volume_flow", "good")
    assert good_flows and all((r["value"], r["unit"]) == (36.0, "m3/h") for r in good_flows)
    [invalid, *_] = flow_readings(sub, "volume_flow", "bad")
    assert (invalid["value"], invalid["reason"]) == (None, "invalid_value")
    volumes = [r["value"] for r in flow_readings(sub, "volume", "good")]
    assert volumes == sorted(volumes) and 1250.0 <= volumes[0] < 1251.0
    # The silent meter is reported on both of its quantities, the pressure transmitter reads on.
    assert any(r["reason"] == "timeout" for r in flow_readings(sub, "volume_flow", "bad"))
    pressures = [r for m in sub.messages("telemetry") for r in m.payload["records"]
                 if r.get("sensor") == "pump-pressure"]
    assert pressures and all(r["quality"] == "good" for r in pressures)


def test_documentation_examples_hold():
    results = doctest.testmod(drivers.modbus)
    assert results.attempted > 0
    assert results.failed == 0
