"""ads1115_loop over the simulated ADS1115: datasheet arithmetic, NAMUR limits, OS polling, chip detection, errors,
and a loop walked through 4, 12, 20 mA and a broken wire on the agent's bus thread."""

from __future__ import annotations

import doctest
import errno
import threading
import time
import tomllib
from pathlib import Path

import pytest

import drivers.ads1115_loop
from drivers.ads1115_loop import Ads1115Loop
from drivers.codecs.ads1115 import (
    MUX_DIFFERENTIAL,
    MUX_SINGLE,
    REG_CONFIG,
    REG_LO_THRESH,
    code_to_volts,
    config_word,
    decode_config,
    lsb_volts,
    swap16,
)
from drivers.errors import DeviceFault, TransportError, TransportTimeout
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.i2c import I2cBus
from edge.config import validate
from edge.sampler import BusWorker, SensorSlot
from edge.simulate.i2c_chips import Ads1015, Ads1115, FakeSMBus, HoneywellHsc, LoopTransmitter
from tests.i2c_helpers import by_quantity, rig

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = {"channel": 0, "shunt_ohms": 150.0, "span": [0.0, 1.6], "data_rate": 860}


def loop_driver(bus: I2cBus, sensor_id: str = "pump-pressure", **options) -> Ads1115Loop:
    raw = {key: value for key, value in {**OPTIONS, **options}.items() if value is not None}
    values, problems = validate_options(Ads1115Loop.options, raw)
    assert problems == []
    return Ads1115Loop(sensor_id, values, bus)


def test_doctests():
    assert doctest.testmod(drivers.ads1115_loop).failed == 0


def test_registry_names_this_class():
    assert driver_class("ads1115_loop") is Ads1115Loop
    assert Ads1115Loop.bus_kind == "i2c"
    assert Ads1115Loop.quantities_for({"quantity": "level"}) == ("loop_current", "level")


# --- validation ---------------------------------------------------------------------------------------------

def problems_of(raw: dict) -> list:
    values, problems = validate_options(Ads1115Loop.options, raw)
    return problems or Ads1115Loop.check_options(values)


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        ({}, [("shunt_ohms", "is required"), ("span", "is required")]),
        ({"shunt_ohms": 150.0, "span": [0, 1.6]},
         [("channel", 'give the input: channel = 0…3, or differential = "0-1" | "0-3" | "1-3" | "2-3"')]),
        ({**OPTIONS, "differential": "0-1"}, [("differential", 'conflicts with "channel": give one input, not both')]),
        ({**OPTIONS, "address": 0x50},
         [("address", "expected 0x48–0x4B (ADDR pin to GND, VDD, SDA or SCL), got 0x50")]),
        ({**OPTIONS, "channel": 4}, [("channel", "must be at most 3, got 4")]),
        ({**OPTIONS, "differential": "1-2", "channel": None},
         [("differential", 'expected one of "0-1", "0-3", "1-3", "2-3", got "1-2"')]),
        ({**OPTIONS, "data_rate": 100},
         [("data_rate", "expected one of 8, 16, 32, 64, 128, 250, 475, 860, got 100")]),
        ({**OPTIONS, "pga": 3.3}, [("pga", "expected one of 6.144, 4.096, 2.048, 1.024, 0.512, 0.256, got 3.3")]),
        ({**OPTIONS, "span": [1.0, 1.0]}, [("span", "the values at 4 mA and 20 mA must differ, got [1.0, 1.0]")]),
        ({**OPTIONS, "span": [0.0]},
         [("span", "expected two numbers [value at 4 mA, value at 20 mA], e.g. [0.0, 1.6], got [0.0]")]),
        ({**OPTIONS, "shunt_ohms": 0}, [("shunt_ohms", "must be greater than 0, got 0")]),
        ({**OPTIONS, "quantity": "loop_current"},
         [("quantity", '"loop_current" is published anyway; name the measured quantity, e.g. "pressure"')]),
        ({**OPTIONS, "shunt_ohms": 100.0, "pga": 2.048},
         [("pga", "±2.048 V ends at 20.5 mA through 100 Ω; choose a pga of at least 2.1 V (21 mA × 100 Ω) so "
                  "that a NAMUR high fault (above 21 mA) is seen")]),
    ],
)
def test_option_problems(raw, problems):
    raw = {key: value for key, value in raw.items() if value is not None}
    assert problems_of(raw) == problems


def test_sample_config_is_valid_and_builds_the_sensor():
    sample = (ROOT / "drivers" / "ads1115_loop" / "sample.toml").read_text()
    minimal = (ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text()
    config = validate(tomllib.loads(minimal + sample))
    [bus], [sensor] = config.buses, config.sensors
    driver = Ads1115Loop(sensor.id, sensor.options, I2cBus(bus.name, bus.options))
    assert (driver.address, driver.input_name, driver.pga, driver.data_rate, driver.span) == (
        0x48, "AIN0", 4.096, 128, (0.0, 1.6))
    assert decode_config(driver.config_word).mux == MUX_SINGLE[0]


# --- datasheet arithmetic (TI SBAS444D §9.3.3, Table 3) -----------------------------------------------------

@pytest.mark.parametrize(("pga", "microvolts"), [(6.144, 187.5), (4.096, 125.0), (2.048, 62.5), (1.024, 31.25),
                                                 (0.512, 15.625), (0.256, 7.8125)])
def test_lsb_size_per_pga(pga, microvolts):
    assert lsb_volts(pga) * 1e6 == microvolts
    assert code_to_volts(0x7FFF, pga) == pytest.approx(pga - microvolts * 1e-6, abs=1e-12)
    assert code_to_volts(0x8000, pga) == -pga
    assert code_to_volts(0xFFFF, pga) == -microvolts * 1e-6


def test_config_words():
    assert config_word(MUX_SINGLE[3], 6.144, 8) == 0b1_111_000_1_000_00011
    assert config_word(MUX_DIFFERENTIAL["2-3"], 0.256, 860, start=False) == 0b0_011_101_1_111_00011
    with pytest.raises(ValueError, match="no ADS1115 data rate of 1600 SPS"):
        config_word(MUX_SINGLE[0], 4.096, 1600)


# --- readings over the simulated chip -----------------------------------------------------------------------

@pytest.mark.parametrize(("ma", "pressure"), [(4.0, 0.0), (8.0, 0.4), (12.0, 0.8), (20.0, 1.6)])
def test_span_maps_4_to_20_ma(ma, pressure):
    loop = LoopTransmitter(150.0)
    loop.set_current(ma)
    _, bus = rig(Ads1115(0x48, {0: loop}))
    driver = loop_driver(bus)
    driver.open()
    assert by_quantity(driver.read()) == {"loop_current": (ma, "mA", "good", None),
                                          "pressure": (pressure, "MPa", "good", None)}


@pytest.mark.parametrize(
    ("ma", "current_quality", "pressure"),
    [
        (3.59, "good", (None, "bad", "loop_fault")),
        (3.6, "good", (-0.04, "uncertain", "out_of_range")),     # exactly at the limit is not below it
        (3.7, "good", (-0.03, "uncertain", "out_of_range")),
        (3.8, "good", (-0.02, "good", None)),
        (20.5, "good", (1.65, "good", None)),
        (20.6, "good", (1.66, "uncertain", "out_of_range")),
        (21.0, "good", (1.7, "uncertain", "out_of_range")),
        (21.01, "good", (None, "bad", "loop_fault")),
        (0.0, "good", (None, "bad", "loop_fault")),              # a broken wire
    ],
)
def test_namur_ne43_limits(ma, current_quality, pressure):
    loop = LoopTransmitter(150.0)
    loop.set_current(ma)
    _, bus = rig(Ads1115(0x48, {0: loop}))
    driver = loop_driver(bus, pga=4.096)
    driver.open()
    found = by_quantity(driver.read())
    assert found["loop_current"][0] == pytest.approx(ma, abs=0.001)
    assert found["loop_current"][2] == current_quality
    value, quality, reason = pressure
    assert (found["pressure"][2], found["pressure"][3]) == (quality, reason)
    assert found["pressure"][0] == (None if value is None else pytest.approx(value, abs=1e-4))


def test_a_clipped_adc_marks_the_current_uncertain():
    loop = LoopTransmitter(150.0)
    loop.set_current(30.0)   # 4.5 V: beyond ±4.096 V
    _, bus = rig(Ads1115(0x48, {0: loop}))
    driver = loop_driver(bus)
    driver.open()
    assert by_quantity(driver.read()) == {"loop_current": (27.30583, "mA", "uncertain", "adc_full_scale"),
                                          "pressure": (None, "MPa", "bad", "loop_fault")}


def test_differential_input_reversed_wiring_is_a_loop_fault():
    loop = LoopTransmitter(150.0)
    loop.set_current(12.0)
    adc = Ads1115(0x48, {1: 0.2, 3: lambda t: 0.2 + loop(t)})   # shunt between AIN3 (+) and AIN1: pair "1-3" reversed
    _, bus = rig(adc)
    driver = loop_driver(bus, channel=None, differential="1-3")
    driver.open()
    assert by_quantity(driver.read()) == {"loop_current": (-12.0, "mA", "good", None),
                                          "pressure": (None, "MPa", "bad", "loop_fault")}


def test_falling_span_other_quantity_and_unit():
    loop = LoopTransmitter(150.0)
    loop.set_current(8.0)
    _, bus = rig(Ads1115(0x4B, {2: loop}))
    driver = loop_driver(bus, address=0x4B, channel=2, span=[5.0, 1.0], unit="m", quantity="level")
    driver.open()
    assert driver.quantities == ("loop_current", "level")
    assert by_quantity(driver.read())["level"] == (4.0, "m", "good", None)


# --- OS polling ---------------------------------------------------------------------------------------------

def test_each_read_waits_for_its_own_conversion():
    loop = LoopTransmitter(150.0)
    loop.set_current(4.0)
    fake, bus = rig(Ads1115(0x48, {0: loop}))
    driver = loop_driver(bus, data_rate=16)   # 62.5 ms per conversion
    driver.open()
    assert by_quantity(driver.read())["loop_current"][0] == 4.0
    loop.set_current(16.0)
    started = time.monotonic()
    assert by_quantity(driver.read())["loop_current"][0] == 16.0   # not the previous conversion's 4.0
    took = time.monotonic() - started
    assert took >= 1 / 16
    # Polls are an eighth of a period apart and begin after a full period: a handful, not a busy loop.
    polls = fake.count(0x48, "w", bytes([REG_CONFIG]))
    assert 2 <= polls <= 2 + 2 * 8 + 2


def test_a_slow_but_in_spec_oscillator_is_waited_for():
    loop = LoopTransmitter(150.0)
    loop.set_current(12.0)
    _, bus = rig(Ads1115(0x48, {0: loop}, rate_error=0.1))
    driver = loop_driver(bus, data_rate=64)
    driver.open()
    assert by_quantity(driver.read())["pressure"][0] == 0.8


def test_a_conversion_that_never_ends_is_a_timeout():
    _, bus = rig(Ads1115(0x48, {0: 1.8}, rate_error=10_000.0))   # a conversion takes 12 s
    driver = loop_driver(bus, data_rate=860)
    driver.open()
    with pytest.raises(TransportTimeout, match=r"ADS1115 0x48 AIN0 did not finish a conversion within 23 ms at "
                                               r"860 SPS \(OS bit still 0; config 0x4"):
        driver.read()


def test_a_conversion_in_progress_for_another_channel_is_not_taken_for_ours():
    adc = Ads1115(0x48, {0: 0.6, 1: 1.8})
    fake, bus = rig(adc)
    first, second = loop_driver(bus, channel=0, data_rate=64), loop_driver(bus, "other", channel=1, data_rate=64)
    first.open()
    second.open()
    # Somebody (a read abandoned after a timeout) started AIN0 at 64 SPS; AIN1's read must not get its result.
    fake.write_word_data(0x48, REG_CONFIG, swap16(config_word(MUX_SINGLE[0], 4.096, 64)))
    assert by_quantity(second.read())["loop_current"][0] == 12.0
    assert adc.conversions == 2


def test_a_chip_left_in_continuous_mode_is_brought_back_to_single_shot():
    adc = Ads1115(0x48, {0: 0.3, 1: 1.8})
    fake, bus = rig(adc)
    driver = loop_driver(bus, channel=1)
    driver.open()
    fake.write_word_data(0x48, REG_CONFIG, swap16(config_word(MUX_SINGLE[0], 4.096, 8) & ~(1 << 8)))
    assert by_quantity(driver.read())["loop_current"][0] == 12.0
    assert decode_config(swap16(fake.read_word_data(0x48, REG_CONFIG))).single_shot


class GlitchingAds1115(Ads1115):
    """Loses its supply for a moment right after each conversion, so it is back at its reset state when polled."""

    def _settle(self) -> None:
        done = self.conversions
        super()._settle()
        if self.conversions > done:
            self.power_cycle()


def test_a_chip_reset_during_the_conversion_is_a_fault_not_a_reading_of_zero():
    _, bus = rig(GlitchingAds1115(0x48, {0: 1.8}))
    driver = loop_driver(bus)
    driver.open()
    with pytest.raises(DeviceFault, match=r"^ADS1115 0x48 AIN0: config read back 0x8583 after writing 0xC3E3 — the "
                                          r"chip reset \(power glitch\?\)"):
        driver.read()


# --- which chip answers -------------------------------------------------------------------------------------

def test_an_ads1015_is_recognised_and_named():
    fake, bus = rig(Ads1015(0x48, {0: 1.8}))
    driver = loop_driver(bus)
    with pytest.raises(DeviceFault, match=r"^the chip at 0x48 on /dev/i2c-1 is an ADS1015 \(12-bit\), not an "
                                          r"ADS1115: its threshold registers drop the 4 low bits"):
        driver.open()
    assert swap16(fake.read_word_data(0x48, REG_LO_THRESH)) == 0x8000   # restored


def test_an_ads1115_keeps_its_thresholds_as_at_reset():
    fake, bus = rig(Ads1115(0x48))
    loop_driver(bus).open()
    assert swap16(fake.read_word_data(0x48, REG_LO_THRESH)) == 0x8000


def test_another_chip_at_the_address_is_named():
    _, bus = rig(HoneywellHsc(0x48, startup=60.0))   # stale 0x8000 whatever is asked
    with pytest.raises(DeviceFault, match=r"the chip at 0x48 on /dev/i2c-1 is not an ADS1115: words written to "
                                          r"its Lo_thresh register read back otherwise \(0x800F → 0x8000, "
                                          r"0x8A55 → 0x8000\)"):
        loop_driver(bus).open()


def test_no_device_at_the_address_gives_advice():
    _, bus = rig()
    with pytest.raises(TransportError) as caught:
        loop_driver(bus).open()
    assert str(caught.value) == "no device at 0x48 on /dev/i2c-1: check wiring / ADDR pin / i2cdetect -y 1"


def test_a_bus_error_mid_read_is_a_transport_error():
    fake, bus = rig(Ads1115(0x48, {0: 1.8}))
    driver = loop_driver(bus)
    driver.open()
    fake.fail(0x48, errno.EIO)
    with pytest.raises(TransportError, match=r"^I2C transfer with 0x48 on /dev/i2c-1 failed: Input/output error"):
        driver.read()


# --- end to end on the agent's bus thread -------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.records: list[dict] = []
        self.lock = threading.Lock()

    def emit(self, record, state) -> None:
        with self.lock:
            self.records.append(record)

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [r for r in self.records if predicate(r)]
            if found:
                return found[-1]
            time.sleep(0.01)
        raise AssertionError("no such record within the deadline")


def test_walk_through_4_12_20_ma_and_a_broken_wire_on_the_bus_thread():
    loop = LoopTransmitter(150.0)
    loop.set_current(4.0)
    fake = FakeSMBus(Ads1115(0x48, {0: loop}))
    bus = I2cBus("i2c", {"device": 1}, smbus=fake)
    recorder = Recorder()
    worker = BusWorker(bus, [SensorSlot("pump-pressure", loop_driver(bus), interval=0.02)], recorder.emit,
                       stamp=lambda: {"ts": int(time.time() * 1000)})
    worker.start()
    try:
        for ma, pressure in ((4.0, 0.0), (12.0, 0.8), (20.0, 1.6)):
            loop.set_current(ma)
            recorder.wait_for(lambda r, p=pressure: r["quantity"] == "pressure" and r["value"] == p)
            current = recorder.wait_for(lambda r, m=ma: r["quantity"] == "loop_current" and r["value"] == m)
            assert current["quality"] == "good"
        loop.break_wire()
        broken = recorder.wait_for(lambda r: r["quantity"] == "pressure" and r["quality"] == "bad")
        assert (broken["value"], broken["reason"]) == (None, "loop_fault")
        current = recorder.wait_for(lambda r: r["quantity"] == "loop_current" and r["value"] == 0.0)
        assert current["quality"] == "good"
        # Unplugged board: every quantity bad with the advice; plugged back: readings resume.
        chip = fake.remove(0x48)
        unplugged = recorder.wait_for(lambda r: r.get("reason") == "transport")
        assert unplugged["error"].startswith("no device at 0x48 on /dev/i2c-1")
        loop.set_current(12.0)
        fake.add(chip)
        recorder.wait_for(lambda r: r["quantity"] == "pressure" and r["value"] == 0.8 and r["ts"] >= unplugged["ts"])
    finally:
        worker.stop()
    pressures = [r for r in recorder.records if r["quantity"] == "pressure"]
    assert all(r["value"] is None for r in pressures if r["quality"] == "bad")


def test_a_full_scale_code_is_never_a_pressure_even_just_under_21_ma():
    # ±4.096 V over 195.04 Ω ends at 21.0008 mA: allowed, but a clipped code reads 20.9996 mA — the true
    # current may be any fault above it, so the pressure is a loop fault, not "out of range".
    _, bus = rig(Ads1115(0x48, {}))
    driver = loop_driver(bus, shunt_ohms=195.04)
    found = {m.quantity: (m.quality, m.reason) for m in driver.measurements(0x7FFF)}
    assert found == {"loop_current": ("uncertain", "adc_full_scale"), "pressure": ("bad", "loop_fault")}
    assert Ads1115Loop.check_options({**OPTIONS, "shunt_ohms": 4.096 / 0.021})[0][0] == "pga"
