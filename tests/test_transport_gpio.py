"""The Pi's on-board buses: GpioBus (gpiozero pin factories) and I2cBus (smbus2)."""

from __future__ import annotations

import doctest
import glob
import importlib.util

import pytest
from gpiozero import DigitalInputDevice
from gpiozero.pins.mock import MockFactory

import drivers.transports.gpio
import drivers.transports.i2c
from drivers.errors import TransportError
from drivers.options import validate_options
from drivers.registry import bus_class
from drivers.transports.gpio import GpioBus
from drivers.transports.i2c import I2cBus

ON_GPIO_HARDWARE = bool(glob.glob("/dev/gpiochip*") or glob.glob("/dev/gpiomem*"))


@pytest.fixture(autouse=True)
def no_factory_from_environment(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)


def gpio_bus(**options) -> GpioBus:
    values, problems = validate_options(GpioBus.options, options)
    assert problems == []
    return GpioBus("pins", values)


def test_registry_names_these_classes():
    assert bus_class("gpio") is GpioBus
    assert bus_class("i2c") is I2cBus


# --- GPIO -----------------------------------------------------------------------------------------

def test_pin_factory_choices():
    assert validate_options(GpioBus.options, {"pin_factory": "gpio"})[1] == [
        ("pin_factory", 'expected one of "lgpio", "rpigpio", "pigpio", "native", "mock", got "gpio"')]
    assert validate_options(GpioBus.options, {"pin_factory": 1})[1] == [
        ("pin_factory", "expected a string, got 1")]
    assert validate_options(GpioBus.options, {}) == ({"pin_factory": None}, [])


def test_mock_factory_from_config():
    bus = gpio_bus(pin_factory="mock")
    assert bus.factory is None  # nothing is created before open()
    with bus:
        factory = bus.factory
        assert isinstance(factory, MockFactory)
        bus.open()
        assert bus.factory is factory
    assert bus.factory is None
    bus.close()


def test_each_bus_has_its_own_factory():
    with gpio_bus(pin_factory="mock") as first, gpio_bus(pin_factory="mock") as second:
        assert first.factory is not second.factory


def test_close_releases_the_pins():
    events = []
    with gpio_bus(pin_factory="mock") as bus:
        device = DigitalInputDevice(17, pull_up=True, pin_factory=bus.factory)
        device.when_activated = lambda: events.append("closed")
        pin = bus.factory.pin(17)
        pin.drive_low()
        pin.drive_high()
        assert events == ["closed"]
        factory = bus.factory
    assert factory.pins == {}
    pin.drive_low()  # a pin of a closed factory reports to nobody
    assert events == ["closed"]


def test_factory_from_environment(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "Mock")
    with gpio_bus() as bus:
        assert isinstance(bus.factory, MockFactory)


def test_config_wins_over_environment(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "nonsense")
    with gpio_bus(pin_factory="mock") as bus:
        assert isinstance(bus.factory, MockFactory)


def test_unknown_factory_from_environment(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "bogus")
    bus = gpio_bus()
    with pytest.raises(TransportError) as err:
        bus.open()
    assert str(err.value) == (
        'unknown GPIO pin factory "bogus" (from GPIOZERO_PIN_FACTORY=bogus); '
        "known: lgpio, rpigpio, pigpio, native, mock")
    assert bus.factory is None


@pytest.mark.skipif(importlib.util.find_spec("lgpio") is not None,
                    reason="lgpio is installed here, so its absence cannot be shown")
def test_missing_lgpio_says_what_to_install():
    with pytest.raises(TransportError) as err:
        gpio_bus(pin_factory="lgpio").open()
    assert str(err.value) == (
        'GPIO pin factory "lgpio" (from pin_factory = "lgpio") does not work here: '
        "No module named 'lgpio' — on Raspberry Pi OS install python3-lgpio (sudo apt install python3-lgpio); "
        'on a bench without GPIO pins set pin_factory = "mock"')


@pytest.mark.skipif(ON_GPIO_HARDWARE, reason="this machine has GPIO hardware, so some factory works")
def test_no_working_factory_lists_every_attempt():
    with pytest.raises(TransportError) as err:
        gpio_bus().open()
    message = str(err.value)
    assert message.startswith("no GPIO pin factory works here (lgpio: ")
    for name in ("rpigpio: ", "pigpio: ", "native: "):
        assert name in message
    assert message.endswith(
        "— on Raspberry Pi OS install python3-lgpio (sudo apt install python3-lgpio); "
        'on a bench without GPIO pins set pin_factory = "mock"')


# --- I2C ------------------------------------------------------------------------------------------

class RegisterModel:
    """A device at one I2C address, behind the smbus2 method the test uses."""

    def __init__(self):
        self.registers = {(0x48, 0x01): 0x85}
        self.closed = False

    def read_byte_data(self, address, register):
        return self.registers[(address, register)]

    def close(self):
        self.closed = True


def test_i2c_options():
    assert validate_options(I2cBus.options, {}) == ({"device": 1, "simulator": None}, [])
    assert validate_options(I2cBus.options, {"device": -1})[1] == [("device", "must be at least 0, got -1")]
    assert validate_options(I2cBus.options, {"device": "1"})[1] == [("device", 'expected an integer, got "1"')]


def test_i2c_simulator_by_name():
    from drivers.transports import i2c

    class Registers:
        def read_byte_data(self, address, register):
            return 0x42

    with pytest.raises(TransportError, match="no simulated I2C bus named 'bench'"):
        I2cBus("i2c", {"simulator": "bench"}).open()
    i2c.SIMULATED["bench"] = Registers()
    try:
        with I2cBus("i2c", {"simulator": "bench"}) as bus:
            assert bus.smbus.read_byte_data(0x48, 0) == 0x42
    finally:
        del i2c.SIMULATED["bench"]


def test_i2c_missing_device_says_how_to_enable_it():
    bus = I2cBus("i2c", {"device": 250})
    with pytest.raises(TransportError) as err:
        bus.open()
    assert str(err.value) == (
        "I2C bus /dev/i2c-250 does not exist — enable I2C with raspi-config (Interface Options → I2C) and reboot")


def test_i2c_injected_bus_is_used_and_left_to_its_owner():
    model = RegisterModel()
    bus = I2cBus("i2c", {}, smbus=model)
    with pytest.raises(TransportError, match="I2C bus /dev/i2c-1 is not open"):
        _ = bus.smbus
    with bus:
        assert bus.smbus.read_byte_data(0x48, 0x01) == 0x85
    assert not model.closed
    with pytest.raises(TransportError):
        _ = bus.smbus
    bus.close()


@pytest.mark.parametrize("module", [drivers.transports.gpio, drivers.transports.i2c])
def test_documentation_examples_hold(module):
    results = doctest.testmod(module)
    assert results.attempted > 0
    assert results.failed == 0


def test_a_hardware_factory_is_shared_and_closed_by_its_last_user():
    # gpiozero's hardware factories share their pins per process: a bus thread closing "its" factory on a
    # reload would take the alarm buzzer's pin with it. One factory per backend, closed with its last user.
    from gpiozero.pins.mock import MockFactory

    from drivers.transports import gpio

    closed = []

    class Factory(MockFactory):
        def close(self):
            closed.append(self)
            super().close()

    first = gpio._acquire("bench-backend", Factory)
    second = gpio._acquire("bench-backend", Factory)
    assert first is second
    gpio._release(first)
    assert closed == []            # the outputs still use it
    gpio._release(second)
    assert closed == [first]
    own, other = gpio._acquire("mock", Factory), gpio._acquire("mock", Factory)
    assert own is not other        # a mock bus has pins of its own
    gpio._release(own)
    gpio._release(other)
