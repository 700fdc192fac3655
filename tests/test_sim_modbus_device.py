"""The general Modbus device simulator: pymodbus's serial server behind ptys, maps, faults, the flow meter."""

from __future__ import annotations

import doctest
import struct

import pytest

import edge.simulate.modbus_device
from drivers.codecs.modbus import ModbusException, read_registers
from drivers.errors import TransportError, TransportTimeout
from drivers.options import validate_options
from drivers.transports.serial import SerialBus
from edge.simulate.modbus_device import (
    FlowMeterSim,
    ModbusDeviceSim,
    Totaliser,
    encode,
    place,
    pump_main_flow_profile,
)


def serial_bus(port: str, **options) -> SerialBus:
    values, problems = validate_options(SerialBus.options, {"port": port, "timeout": "1s", **options})
    assert problems == []
    return SerialBus("rs485-1", values)


# --- encoding -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "type_name", "word_order", "expected"),
    [
        (10.0, "float32", "big", [0x4120, 0x0000]),
        (10.0, "float32", "little", [0x0000, 0x4120]),
        (-0.1, "float32", "big", [0xBDCC, 0xCCCD]),
        (123456789, "uint32", "big", [0x075B, 0xCD15]),
        (123456789, "uint32", "little", [0xCD15, 0x075B]),
        (-2, "int32", "big", [0xFFFF, 0xFFFE]),
        (-2, "int32", "little", [0xFFFE, 0xFFFF]),
        (-1234, "int16", "big", [0xFB2E]),
        (65535, "uint16", "big", [0xFFFF]),
        (12.6, "int16", "big", [13]),
    ],
)
def test_encode_known_patterns(value, type_name, word_order, expected):
    assert encode(value, type_name, word_order) == expected


def test_encode_nan_is_the_ieee_quiet_nan():
    high, low = encode(float("nan"), "float32")
    raw = struct.unpack(">f", struct.pack(">HH", high, low))[0]
    assert raw != raw


@pytest.mark.parametrize(
    ("value", "type_name", "word_order", "message"),
    [
        (70000, "uint16", "big", r"70000 does not fit a uint16 \(0…65535\)"),
        (-1, "uint32", "big", r"-1 does not fit a uint32"),
        (40000, "int16", "big", r"40000 does not fit a int16"),
        (1.0, "float64", "big", r"type must be one of int16, uint16, int32, uint32, float32, got 'float64'"),
        (1.0, "float32", "CDAB", r'word_order must be "big" or "little", got \'CDAB\''),
    ],
)
def test_encode_refuses_what_does_not_fit(value, type_name, word_order, message):
    with pytest.raises(ValueError, match=message):
        encode(value, type_name, word_order)


def test_place_spreads_constants_and_profiles_over_their_registers():
    assert place(0x20, 10.0, "float32", "little") == {0x20: 0x0000, 0x21: 0x4120}
    words = place(0x20, lambda t: 100_000 * t, "uint32")
    assert (words[0x20](1.0), words[0x21](1.0)) == (0x0001, 0x86A0)  # 100000 = 0x000186A0
    assert sorted(words) == [0x20, 0x21]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unit": 0}, "unit must be 1–247, got 0"),
        ({"unit": 248}, "unit must be 1–247, got 248"),
        ({"registers": {0: 0x10000}}, r"a register holds 0…0xFFFF \(or a negative int16\), got 65536"),
        ({"registers": {0x10000: 1}}, r"register numbers are 0…0xFFFF, got 65536"),
    ],
)
def test_constructor_refuses_impossible_devices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModbusDeviceSim(**kwargs)


# --- serving a map ------------------------------------------------------------------------------------------------

@pytest.fixture
def sim(tmp_path):
    registers = {0x00: 7, 0x01: -2, **place(0x10, 12.5, "float32"), 0x20: 99}
    with ModbusDeviceSim(5, registers, {0x00: 1234}, link_dir=tmp_path) as device:
        yield device


@pytest.fixture
def bus(sim):
    with serial_bus(sim.port) as port:
        yield port


def test_serves_holding_and_input_registers_apart(sim, bus):
    assert read_registers(bus, 5, 0x00, 2, function=3) == [7, 0xFFFE]
    assert read_registers(bus, 5, 0x10, 2, function=3) == [0x4148, 0x0000]
    assert read_registers(bus, 5, 0x00, 1, function=4) == [1234]
    assert sim.requests == [(3, 0x00, 2), (3, 0x10, 2), (4, 0x00, 1)]


def test_without_input_registers_function_4_reads_the_holding_map(tmp_path):
    with ModbusDeviceSim(1, {0x04: 350}, link_dir=tmp_path) as shared, serial_bus(shared.port) as port:
        assert read_registers(port, 1, 0x04, 1, function=4) == [350]
        assert read_registers(port, 1, 0x04, 1, function=3) == [350]


@pytest.mark.parametrize(
    ("address", "count", "function"),
    [(0x02, 1, 3), (0x01, 2, 3), (0x12, 1, 3), (0x11, 2, 3), (0x01, 1, 4), (0x300, 1, 3)],
)
def test_registers_outside_the_map_are_an_illegal_data_address(sim, bus, address, count, function):
    with pytest.raises(ModbusException) as err:
        read_registers(bus, 5, address, count, function)
    assert err.value.code == 2
    assert sim.requests == [(function, address, count)]  # refused requests are counted too


def test_set_changes_a_register_and_refuses_new_ones(sim, bus):
    sim.set(0x20, 100)
    sim.set(0x00, lambda t: 4321, table="input")
    assert read_registers(bus, 5, 0x20, 1) == [100]
    assert read_registers(bus, 5, 0x00, 1, function=4) == [4321]
    with pytest.raises(KeyError, match="register 0x0021 is not in this device's holding map"):
        sim.set(0x21, 1)


def test_all_words_of_one_request_see_the_same_instant(tmp_path):
    instants: list[float] = []

    def flow(t: float) -> float:
        instants.append(t)
        return 1.0 + t

    with ModbusDeviceSim(1, place(0x10, flow, "float32"), link_dir=tmp_path) as device:
        with serial_bus(device.port) as port:
            first = read_registers(port, 1, 0x10, 2)
            second = read_registers(port, 1, 0x10, 2)
    assert len(instants) == 4
    assert instants[0] == instants[1] < instants[2] == instants[3]
    assert struct.unpack(">f", struct.pack(">HH", *first))[0] == pytest.approx(1.0 + instants[0], rel=1e-7)
    assert struct.unpack(">f", struct.pack(">HH", *second))[0] == pytest.approx(1.0 + instants[2], rel=1e-7)


# --- faults -------------------------------------------------------------------------------------------------------

def test_fail_with_answers_an_exception_until_healed(sim, bus):
    sim.fail_with(6)
    with pytest.raises(ModbusException, match=r"device 5 answered Modbus exception 6 \(server device busy\)"):
        read_registers(bus, 5, 0x00, 1)
    sim.heal()
    assert read_registers(bus, 5, 0x00, 1) == [7]


def test_fail_with_can_hit_only_some_registers(sim, bus):
    sim.fail_with(4, registers=[0x11])
    assert read_registers(bus, 5, 0x00, 2) == [7, 0xFFFE]
    with pytest.raises(ModbusException, match=r"exception 4 \(server device failure\) for registers 0x0010–0x0011"):
        read_registers(bus, 5, 0x10, 2)


def test_other_units_on_the_line_are_ignored(sim):
    with serial_bus(sim.port, timeout="100ms") as port:
        with pytest.raises(TransportTimeout, match="no answer from Modbus unit 6 within 0.1 s"):
            read_registers(port, 6, 0x00, 1)
    assert sim.requests == []


def test_a_cut_wire_is_silence_until_mended(sim):
    with serial_bus(sim.port, timeout="100ms") as port:
        sim.cut_wire()
        with pytest.raises(TransportTimeout):
            read_registers(port, 5, 0x00, 1)
        assert sim.requests == []
        sim.mend_wire()
        assert read_registers(port, 5, 0x00, 1) == [7]


def test_unplug_and_plug_in(sim, bus):
    assert read_registers(bus, 5, 0x00, 1) == [7]
    sim.unplug()
    with pytest.raises(TransportError) as err:
        read_registers(bus, 5, 0x00, 1)
    assert not isinstance(err.value, TransportTimeout)
    with pytest.raises(TransportError, match="does not exist"):
        bus.reopen()
    sim.plug_in()
    bus.reopen()
    assert read_registers(bus, 5, 0x00, 1) == [7]


# --- the flow meter -----------------------------------------------------------------------------------------------

def decode_flow(words: list[int]) -> float:
    low, high = words  # the meter sends the low word first
    return struct.unpack(">f", struct.pack(">HH", high, low))[0]


def test_flow_meter_registers_follow_its_profile_and_totaliser(tmp_path):
    with FlowMeterSim(3, 36.0, start_litres=1_000, link_dir=tmp_path) as meter, serial_bus(meter.port) as port:
        assert read_registers(port, 3, FlowMeterSim.REG_UNIT, 1) == [3]
        before = meter.elapsed()
        words = read_registers(port, 3, FlowMeterSim.REG_FLOW, 4)
        after = meter.elapsed()
    assert decode_flow(words[:2]) == 36.0
    litres = words[2] << 16 | words[3]
    # 36 m3/h is 10 L/s; the totaliser shows whole litres.
    assert 1_000 + 10 * before - 1 <= litres <= 1_000 + 10 * after


def test_totaliser_integrates_a_varying_flow():
    profile = pump_main_flow_profile(base=3.6, peak=36.0, period=2.0, noise=0.0)  # 1 to 10 L/s
    # The integral over whole periods is the mean flow (base + peak) / 2 = 19.8 m3/h = 5.5 L/s times the time.
    totaliser = Totaliser(profile, litres=0.0)
    total = totaliser.at(4.0)
    assert total == pytest.approx(5.5 * 4.0, rel=1e-3)
    assert totaliser.at(4.0) == total  # asking twice at one instant counts once
    assert totaliser.at(1.0) == total  # a restarted clock does not run the total backwards ...
    assert totaliser.at(3.0) == pytest.approx(total + 5.5 * 2.0, rel=1e-3)  # ... and counts on from there


def test_flow_meter_wraps_like_a_32_bit_counter(tmp_path):
    with FlowMeterSim(3, 0.0, start_litres=0xFFFF_FFFF, link_dir=tmp_path) as meter:
        assert meter.total_litres() == 0xFFFF_FFFF
        assert meter.flow() == 0.0


def test_pump_main_profile_stays_between_base_and_peak():
    profile = pump_main_flow_profile(base=4.0, peak=18.0, period=300.0, noise=0.2)
    values = [profile(t / 10) for t in range(6000)]
    assert 3.8 <= min(values) and max(values) <= 18.2
    assert profile(123.4) == profile(123.4)


def test_documentation_examples_hold():
    results = doctest.testmod(edge.simulate.modbus_device)
    assert results.attempted > 0
    assert results.failed == 0
