"""modbus_pressure end to end: SerialBus over a pty to pymodbus's own serial server (the simulator)."""

from __future__ import annotations

import doctest
import time

import pytest

import drivers.modbus_pressure
import edge.simulate.modbus_pressure
from drivers.codecs.modbus import ModbusException
from drivers.errors import DeviceFault, TransportError, TransportTimeout
from drivers.modbus_pressure import ModbusPressure, to_mpa
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.serial import SerialBus
from edge.simulate.modbus_pressure import PressureTransmitterSim, fire_main_profile

# Physical definitions, written out here independently of the driver's table.
PA_PER = {"MPa": 1e6, "kPa": 1e3, "Pa": 1.0, "bar": 1e5, "mbar": 100.0, "kgf/cm2": 98066.5,
          "psi": 6894.757293168, "mH2O": 9806.65, "mmH2O": 9.80665}


@pytest.fixture
def sim(tmp_path):
    with PressureTransmitterSim(1, 0.35, link_dir=tmp_path) as transmitter:
        yield transmitter


def serial_bus(port: str, **options) -> SerialBus:
    values, problems = validate_options(SerialBus.options, {"port": port, "timeout": "1s", **options})
    assert problems == []
    return SerialBus("rs485-1", values)


@pytest.fixture
def bus(sim):
    with serial_bus(sim.port) as port:
        yield port


def transmitter(bus, **options) -> ModbusPressure:
    values, problems = validate_options(ModbusPressure.options, {"address": 1, **options})
    assert problems == []
    return ModbusPressure("pump-pressure", values, bus)


def test_registry_names_this_class():
    assert driver_class("modbus_pressure") is ModbusPressure
    assert (ModbusPressure.bus_kind, ModbusPressure.quantities) == ("serial", ("pressure",))


# --- validation, no I/O ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        ({}, [("address", "is required")]),
        ({"address": 0}, [("address", "must be at least 1, got 0")]),
        ({"address": 248}, [("address", "must be at most 247, got 248")]),
        ({"address": 1, "value_register": 65536}, [("value_register", "must be at most 65535, got 65536")]),
        ({"address": 1, "unit_register": -1}, [("unit_register", "must be at least 0, got -1")]),
        ({"address": 1, "decimals_register": 1.5}, [("decimals_register", "expected an integer, got 1.5")]),
        ({"address": 1, "decimals": 5}, [("decimals", "must be at most 4, got 5")]),
        ({"address": 1, "unit": "atm"},
         [("unit", 'expected one of "MPa", "kPa", "Pa", "bar", "mbar", "kgf/cm2", "psi", "mH2O", "mmH2O", '
                   'got "atm"')]),
        ({"address": 1, "function": 6}, [("function", "expected one of 3, 4, got 6")]),
        ({"address": 1, "retries": -1}, [("retries", "must be at least 0, got -1")]),
        ({"address": 1, "slave": 2}, [("slave", "unknown key")]),
    ],
)
def test_option_problems(raw, problems):
    assert validate_options(ModbusPressure.options, raw)[1] == problems


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        ({"decimals": 2, "decimals_register": 3},
         [("decimals", 'conflicts with "decimals_register": give a fixed value or a register, not both')]),
        ({"unit": "bar", "unit_register": 7},
         [("unit", 'conflicts with "unit_register": give a fixed value or a register, not both')]),
        ({"value_register": 3}, [("value_register", 'is the same register (3) as "decimals_register"')]),
        ({"decimals_register": 4}, [("decimals_register", 'is the same register (4) as "value_register"')]),
        ({"unit_register": 3}, [("unit_register", 'is the same register (3) as "decimals_register"')]),
        ({"value_register": 3, "decimals": 1}, []),
        ({"value_register": 0x10, "decimals_register": 0x11, "unit_register": 0x12}, []),
    ],
)
def test_cross_key_problems(raw, problems):
    values, single_key_problems = validate_options(ModbusPressure.options, {"address": 1, **raw})
    assert single_key_problems == []
    assert ModbusPressure.check_options(values) == problems


def test_constructor_refuses_conflicts_without_io(tmp_path):
    values, _ = validate_options(ModbusPressure.options, {"address": 1, "unit": "bar", "unit_register": 2})
    never_opened = serial_bus(str(tmp_path / "ttyUSB9"))
    with pytest.raises(ValueError, match='unit: conflicts with "unit_register"'):
        ModbusPressure("p", values, never_opened)
    assert not never_opened.is_open


# --- reading from pymodbus's server ---------------------------------------------------------------

def test_reads_pressure_in_one_request(sim, bus):
    with transmitter(bus) as driver:
        [reading] = driver.read()
    assert (reading.quantity, reading.value, reading.unit, reading.quality) == ("pressure", 0.35, "MPa", "good")
    assert sim.requests == [(3, 2, 3)]  # unit, decimals and value together


@pytest.mark.parametrize(
    ("unit_code", "unit", "decimals", "raw"),
    [
        (0, "MPa", 3, 350),     # 0.350 MPa
        (1, "kPa", 1, 3500),    # 350.0 kPa
        (2, "Pa", 0, 12345),    # 12345 Pa
        (3, "bar", 2, 350),     # 3.50 bar
        (4, "mbar", 0, 3500),   # 3500 mbar
        (5, "kgf/cm2", 2, 357),  # 3.57 kgf/cm²
        (6, "psi", 1, 508),     # 50.8 psi
        (7, "mH2O", 1, 357),    # 35.7 mH2O
        (8, "mmH2O", 0, 3570),  # 3570 mmH2O
    ],
)
def test_every_unit_code_converts_to_mpa(sim, bus, unit_code, unit, decimals, raw):
    sim.set_display(unit_code, decimals)
    sim.hold(raw)
    with transmitter(bus) as driver:
        value = driver.read()[0].value
    exact_mpa = raw / 10**decimals * PA_PER[unit] / 1e6
    resolution = PA_PER[unit] / 1e6 / 10**decimals
    assert value == pytest.approx(exact_mpa, abs=resolution / 10)


def test_negative_values(sim, bus):
    sim.set_display(1, 1)  # kPa, one decimal: a suction line below atmosphere
    sim.hold(-125)
    with transmitter(bus) as driver:
        assert driver.read()[0].value == -0.0125


def test_most_negative_and_positive_register_values(sim, bus):
    sim.set_display(0, 3)
    with transmitter(bus) as driver:
        sim.hold(-32768)
        assert driver.read()[0].value == -32.768
        sim.hold(32767)
        assert driver.read()[0].value == 32.767


def test_follows_the_profile_through_a_dip(sim, bus):
    sim.set_profile(fire_main_profile(baseline=0.35, dip_at=0.0, dip_seconds=60.0, dip_to=0.08, ramp=0.0, noise=0.0))
    with transmitter(bus) as driver:
        assert driver.read()[0].value == 0.08
    sim.set_profile(fire_main_profile(dip_at=60.0, noise=0.0))
    with transmitter(bus) as driver:
        assert driver.read()[0].value == 0.35


def test_fixed_unit_and_decimals_read_only_the_value(sim, bus):
    sim.set_display(3, 2)
    sim.hold(350)
    with transmitter(bus, unit="bar", decimals=2) as driver:
        assert driver.read()[0].value == 0.35
    assert sim.requests == [(3, 4, 1)]


def test_fixed_unit_overrides_what_the_device_says(sim, bus):
    sim.set_display(0, 1)
    sim.hold(35)
    with transmitter(bus, unit="bar") as driver:  # e.g. a transmitter whose unit register is wrong
        assert driver.read()[0].value == 0.35
    assert sim.requests == [(3, 3, 2)]


def test_input_registers(sim, bus):
    with transmitter(bus, function=4) as driver:
        assert driver.read()[0].value == 0.35
    assert sim.requests == [(4, 2, 3)]


def test_unknown_unit_code_is_a_device_fault(sim, bus):
    sim.set_display(12, 3)
    with transmitter(bus) as driver, pytest.raises(DeviceFault) as err:
        driver.read()
    assert str(err.value).startswith("device 1 reports unknown pressure unit code 12 in register 0x0002 (known: 0 MPa")
    assert err.value.reason == "device_fault"


def test_impossible_decimals_are_a_device_fault(sim, bus):
    sim.set_display(0, 9)
    with transmitter(bus) as driver:
        with pytest.raises(DeviceFault, match="device 1 reports 9 decimal places in register 0x0003; expected 0–4"):
            driver.read()


def test_exception_response_is_a_device_fault(sim, bus):
    sim.fail_with(2)
    with transmitter(bus) as driver, pytest.raises(DeviceFault) as err:
        driver.read()
    assert str(err.value) == "device 1 answered Modbus exception 2 (illegal data address) for registers 0x0002–0x0004"
    assert len(sim.requests) == 1  # a definite answer is not retried


def test_busy_device_is_retried(sim, bus):
    sim.fail_with(6)
    with transmitter(bus, retries=2) as driver:
        with pytest.raises(ModbusException, match=r"exception 6 \(server device busy\)"):
            driver.read()
    assert len(sim.requests) == 3


def test_register_outside_the_device_map(sim, bus):
    # pymodbus's own datastore answers "illegal data address" for a register the device lacks.
    with transmitter(bus, value_register=0x0010, unit="MPa", decimals=3) as driver:
        with pytest.raises(DeviceFault, match=r"exception 2 \(illegal data address\) for register 0x0010$"):
            driver.read()


def test_silent_device_times_out_within_the_timeout(tmp_path, sim):
    sim.cut_wire()
    with serial_bus(sim.port, timeout="100ms") as short_bus:
        with transmitter(short_bus, retries=1) as driver:
            started = time.monotonic()
            with pytest.raises(TransportTimeout) as err:
                driver.read()
            elapsed = time.monotonic() - started
        assert str(err.value) == "no answer from Modbus unit 1 within 0.1 s (after 2 attempts)"
        assert err.value.reason == "timeout"
        assert 0.2 <= elapsed < 5.0  # two attempts of 0.1 s; the upper bound only proves it does not hang
        assert sim.requests == []
        sim.mend_wire()
        with transmitter(short_bus) as driver:
            assert driver.read()[0].value == 0.35


def test_other_units_are_ignored_on_the_line(sim):
    with serial_bus(sim.port, timeout="100ms") as short_bus:
        with transmitter(short_bus, address=2, retries=0) as driver:
            with pytest.raises(TransportTimeout, match="no answer from Modbus unit 2 within 0.1 s$"):
                driver.read()
    assert sim.requests == []


def test_unplugged_adapter_then_reopen(sim, bus):
    driver = transmitter(bus)
    assert driver.read()[0].value == 0.35
    sim.unplug()
    with pytest.raises(TransportError) as err:
        driver.read()
    assert not isinstance(err.value, TransportTimeout)
    assert "was the USB adapter unplugged?" in str(err.value)
    with pytest.raises(TransportError, match="does not exist — is the USB adapter plugged in"):
        bus.reopen()
    sim.plug_in()
    bus.reopen()
    assert driver.read()[0].value == 0.35


def test_to_mpa_rounds_to_the_instrument_resolution():
    assert to_mpa(350, 3, 1) == 0.00035  # 0.350 kPa
    assert to_mpa(1, 0, 2) == 0.000001
    with pytest.raises(ValueError, match="unknown pressure unit code 9"):
        to_mpa(1, 0, 9)


@pytest.mark.parametrize("module", [drivers.modbus_pressure, edge.simulate.modbus_pressure])
def test_documentation_examples_hold(module):
    results = doctest.testmod(module)
    assert results.attempted > 0
    assert results.failed == 0
