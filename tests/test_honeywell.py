"""honeywell_pressure over the simulated HSC: transfer function end points, status bits, stale data, errors."""

from __future__ import annotations

import contextlib
import doctest
import threading
import time
import tomllib
from pathlib import Path

import pytest

import drivers.honeywell_pressure
from drivers.codecs import honeywell
from drivers.errors import DeviceFault, TransportError
from drivers.honeywell_pressure import HoneywellPressure, StaleData
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.i2c import I2cBus
from edge.config import validate
from edge.sampler import BusWorker, SensorSlot
from edge.simulate.i2c_chips import FakeSMBus, HoneywellHsc
from tests.i2c_helpers import by_quantity, rig

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = {"p_min": 0.0, "p_max": 1.6, "unit": "bar"}


def sensor_driver(bus: I2cBus, **options) -> HoneywellPressure:
    values, problems = validate_options(HoneywellPressure.options, {**OPTIONS, **options})
    assert problems == []
    driver = HoneywellPressure("pump-pressure-digital", values, bus)
    driver.open()
    return driver


def test_doctests():
    assert doctest.testmod(drivers.honeywell_pressure).failed == 0


def test_registry_names_this_class():
    assert driver_class("honeywell_pressure") is HoneywellPressure
    assert HoneywellPressure.bus_kind == "i2c"
    assert HoneywellPressure.quantities_for({"temperature": True}) == ("pressure", "temperature")
    assert HoneywellPressure.quantities_for({"temperature": False}) == ("pressure",)


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        ({}, [("p_min", "is required"), ("p_max", "is required"), ("unit", "is required")]),
        ({**OPTIONS, "unit": "psig"},
         [("unit", 'expected one of "mbar", "bar", "kPa", "MPa", "Pa", "inH2O", "psi", got "psig"')]),
        ({**OPTIONS, "transfer": "A"}, [("transfer", 'expected one of "10-90", "5-95", "5-85", "4-94", got "A"')]),
        ({**OPTIONS, "address": 0x80},
         [("address", "expected a 7-bit I2C address 0x08–0x7F (0x28 for output type 2 … 0x78 for 7), got 0x80")]),
        ({**OPTIONS, "p_max": 0.0}, [("p_max", "must differ from p_min (0)")]),
    ],
)
def test_option_problems(raw, problems):
    values, found = validate_options(HoneywellPressure.options, raw)
    assert (found or HoneywellPressure.check_options(values)) == problems


def test_sample_config_is_valid_and_builds_the_sensor():
    sample = (ROOT / "drivers" / "honeywell_pressure" / "sample.toml").read_text()
    minimal = (ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text()
    config = validate(tomllib.loads(minimal + sample))
    [bus], [sensor] = config.buses, config.sensors
    driver = HoneywellPressure(sensor.id, sensor.options, I2cBus(bus.name, bus.options))
    assert (driver.address, driver.p_min, driver.p_max, driver.unit, driver.transfer, driver.quantities) == (
        0x28, 0.0, 1.6, "bar", "10-90", ("pressure", "temperature"))


# --- the transfer function (HSC/SSC datasheets: A = 10–90 % of 2^14 counts) ---------------------------------

@pytest.mark.parametrize(
    ("transfer", "counts", "expected"),
    [
        ("10-90", 1638, 0.0), ("10-90", 14745, 1.6), ("5-95", 819, 0.0), ("5-95", 15564, 1.6),
        ("5-85", 819, 0.0), ("5-85", 13926, 1.6), ("4-94", 655, 0.0), ("4-94", 15400, 1.6),
    ],
)
def test_transfer_function_end_points(transfer, counts, expected):
    assert honeywell.pressure(counts, 0.0, 1.6, transfer) == expected


def test_transfer_function_of_a_differential_part():
    # "001BD": −1 … +1 bar; mid-scale counts are 0 bar.
    assert honeywell.pressure(1638, -1.0, 1.0, "10-90") == -1.0
    assert honeywell.pressure(14745, -1.0, 1.0, "10-90") == 1.0
    assert honeywell.pressure(8192, -1.0, 1.0, "10-90") == pytest.approx(0.0, abs=1e-4)


def test_temperature_end_points():
    assert (honeywell.temperature_c(0), honeywell.temperature_c(2047), honeywell.temperature_c(512)) == (
        -50.0, 150.0, 0.02)


# --- reads over the simulated sensor ------------------------------------------------------------------------

def test_reads_pressure_with_two_bytes():
    fake, bus = rig(HoneywellHsc(0x28, p_min=0.0, p_max=1.6, pressure=1.6, startup=0.0))
    assert by_quantity(sensor_driver(bus).read()) == {"pressure": (1.6, "bar", "good", None)}
    assert [len(t.data) for t in fake.transfers if t.op == "r"] == [2]


def test_reads_temperature_with_four_bytes_masking_the_do_not_care_bits():
    sensor = HoneywellHsc(0x38, p_min=-1.0, p_max=1.0, pressure=-1.0, temperature=21.5, startup=0.0, filler=0x1F)
    fake, bus = rig(sensor)
    found = by_quantity(sensor_driver(bus, address=0x38, p_min=-1.0, p_max=1.0, temperature=True).read())
    assert found["pressure"] == (-1.0, "bar", "good", None)
    assert found["temperature"][0] == pytest.approx(21.5, abs=0.05)
    assert [len(t.data) for t in fake.transfers if t.op == "r"] == [4]


def test_beyond_the_compensated_range_is_uncertain():
    _, bus = rig(HoneywellHsc(0x28, p_min=0.0, p_max=1.6, pressure=1.7, startup=0.0))
    assert by_quantity(sensor_driver(bus).read()) == {"pressure": (1.69998, "bar", "uncertain", "out_of_range")}


class Ticking:
    """A clock that moves 1 ms each time the sensor looks at it (once per read): timing without races."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def test_stale_data_is_read_again_once_the_sensor_has_measured():
    sensor = HoneywellHsc(0x28, pressure=0.4, update_period=0.0025, startup=0.0, clock=Ticking())
    fake, bus = rig(sensor)
    driver = sensor_driver(bus)
    assert by_quantity(driver.read())["pressure"][0] == pytest.approx(0.4, abs=1e-4)    # 1 ms: cycle 0
    sensor.set_pressure(1.2)
    # 2 ms: still cycle 0, stale; the driver waits and reads again at 3 ms: cycle 1, the new pressure.
    assert by_quantity(driver.read())["pressure"][0] == pytest.approx(1.2, abs=1e-4)
    assert [honeywell.parse(t.data).status for t in fake.transfers if t.op == "r"] == [0, 2, 0]


def test_a_sensor_that_stopped_measuring_fails_as_stale():
    sensor = HoneywellHsc(0x28, pressure=0.4, startup=0.0)
    _, bus = rig(sensor)
    driver = sensor_driver(bus)
    driver.read()
    sensor.stop_measuring()
    with contextlib.suppress(StaleData):
        driver.read()   # the last measurement before it stopped may not have been fetched yet
    with pytest.raises(StaleData, match=r"^Honeywell sensor at 0x28 on /dev/i2c-1 returns stale data \(status 10\) "
                                        r"on every read for 15 ms: it is not measuring") as caught:
        driver.read()
    assert caught.value.reason == "stale"


def test_a_sensor_that_never_measured_fails_as_stale():
    _, bus = rig(HoneywellHsc(0x28, startup=60.0))
    with pytest.raises(StaleData, match="returns stale data"):
        sensor_driver(bus).read()


def test_a_first_read_right_after_power_up_waits_for_the_first_measurement():
    _, bus = rig(HoneywellHsc(0x28, pressure=0.4, startup=0.003))
    assert by_quantity(sensor_driver(bus).read())["pressure"][2] == "good"


def test_diagnostic_condition_and_command_mode_are_device_faults():
    sensor = HoneywellHsc(0x28, startup=0.0)
    _, bus = rig(sensor)
    driver = sensor_driver(bus)
    sensor.command_mode = True
    with pytest.raises(DeviceFault, match=r"is in command mode \(status 01\)"):
        driver.read()
    sensor.command_mode = False
    sensor.fault = "diagnostic"
    with pytest.raises(DeviceFault, match=r"reports a diagnostic condition \(status 11\)") as caught:
        driver.read()
    assert caught.value.reason == "device_fault"


def test_no_device_gives_advice():
    _, bus = rig()
    with pytest.raises(TransportError) as caught:
        sensor_driver(bus).read()
    assert str(caught.value) == "no device at 0x28 on /dev/i2c-1: check wiring / ADDR pin / i2cdetect -y 1"


def test_stale_on_the_bus_thread_is_a_bad_reading_without_a_value():
    sensor = HoneywellHsc(0x28, pressure=0.4, startup=0.0)
    fake = FakeSMBus(sensor)
    bus = I2cBus("i2c", {"device": 1}, smbus=fake)
    values, _ = validate_options(HoneywellPressure.options, {**OPTIONS, "temperature": True})
    records, lock = [], threading.Lock()

    def emit(record, state):
        with lock:
            records.append(record)

    def seen(predicate) -> bool:
        with lock:
            return any(predicate(r) for r in records)

    worker = BusWorker(bus, [SensorSlot("digital", HoneywellPressure("digital", values, bus), interval=0.02)], emit,
                       stamp=lambda: {"ts": int(time.time() * 1000)})
    worker.start()
    try:
        deadline = time.monotonic() + 10.0
        while not seen(lambda r: r["quantity"] == "temperature" and r["quality"] == "good"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sensor.stop_measuring()
        while not seen(lambda r: r.get("reason") == "stale"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        worker.stop()
    stale = [r for r in records if r.get("reason") == "stale"]
    assert {r["quantity"] for r in stale} == {"pressure", "temperature"}
    assert all(r["value"] is None and r["quality"] == "bad" for r in stale)
