"""The simulated shared line: requests split by silence, every device asked, faults, pacing, unplugging."""

from __future__ import annotations

import os
import time

import pytest

from drivers.errors import TransportError
from drivers.options import validate_options
from drivers.transports.serial import SerialBus
from edge.simulate.line import SimulatedLine
from tests.mqtt_helpers import wait_until


class Addressed:
    """Answers ``b"R" + address + payload`` to requests ``b"Q" + address``; remembers what it saw."""

    def __init__(self, address: int, payload: bytes = b"0123456789"):
        self.address = address
        self.payload = payload
        self.seen: list[bytes] = []

    def answer(self, request: bytes) -> bytes | None:
        self.seen.append(request)
        if request == b"Q" + bytes((self.address,)):
            return b"R" + bytes((self.address,)) + self.payload
        return None


def bus_on(line: SimulatedLine, baudrate: int = 2400, timeout: str = "300ms") -> SerialBus:
    values, problems = validate_options(
        SerialBus.options, {"port": line.path, "baudrate": baudrate, "parity": "E", "timeout": timeout})
    assert problems == []
    return SerialBus("line", values)


def ask(bus: SerialBus, address: int, n: int = 12) -> bytes:
    bus.wait_frame_gap()
    bus.reset_input_buffer()
    bus.write(b"Q" + bytes((address,)))
    return bus.read(n)


def test_only_the_addressed_device_answers_but_every_device_hears_the_request():
    one, two = Addressed(1), Addressed(2)
    with SimulatedLine([one, two]) as line, bus_on(line) as bus:
        assert ask(bus, 2) == b"R\x020123456789"
        assert ask(bus, 1) == b"R\x010123456789"
        assert ask(bus, 9, n=1) == b""
    assert one.seen == two.seen == [b"Q\x02", b"Q\x01", b"Q\x09"]
    assert line.requests == [b"Q\x02", b"Q\x01", b"Q\x09"]


def test_answers_take_the_wire_time_of_the_line():
    # 12 answer bytes at 2400 Bd 8E1 (11 bits each) take 55 ms on copper, and so on the simulated line.
    device = Addressed(1)
    with SimulatedLine([device], baudrate=2400) as line, bus_on(line) as bus:
        started = time.monotonic()
        assert ask(bus, 1) == b"R\x010123456789"
        assert time.monotonic() - started >= 12 * 11 / 2400


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("silent", lambda got: got == b""),
        ("garble", lambda got: len(got) == 12 and got != b"R\x010123456789"),
        ("noise", lambda got: got.endswith(b"R\x010123456789") and len(got) > 12),
    ],
)
def test_faults_hit_only_the_device_they_are_set_on(fault, check):
    sick, healthy = Addressed(1), Addressed(2)
    with SimulatedLine([sick, healthy]) as line, bus_on(line) as bus:
        line.set_fault(sick, fault)
        assert check(ask(bus, 1, n=16))
        assert ask(bus, 2) == b"R\x020123456789"
        line.set_fault(sick, None)
        assert ask(bus, 1) == b"R\x010123456789"


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="fault must be one of"):
        SimulatedLine().set_fault(Addressed(1), "on fire")


def test_two_devices_answering_one_request_collide():
    with SimulatedLine([Addressed(1, b"aa"), Addressed(1, b"bb")]) as line, bus_on(line) as bus:
        assert ask(bus, 1, n=8) == b"R\x01aaR\x01bb"


def test_unplugged_line_fails_the_port_and_comes_back_under_the_same_path():
    device = Addressed(3)
    with SimulatedLine([device]) as line:
        bus = bus_on(line)
        bus.open()
        assert ask(bus, 3) == b"R\x030123456789"
        line.unplug()
        assert not os.path.exists(line.path)
        with pytest.raises(TransportError):
            ask(bus, 3)
        with pytest.raises(TransportError, match="does not exist"):
            bus.reopen()
        line.plug_in()
        wait_until(lambda: os.path.exists(line.path), 2.0, "the port to come back")
        bus.reopen()
        assert ask(bus, 3) == b"R\x030123456789"
        bus.close()
    assert not os.path.exists(line.path)


def test_stop_is_safe_twice_and_removes_the_path():
    line = SimulatedLine().start()
    path = line.path
    assert os.path.islink(path)
    line.stop()
    line.stop()
    assert not os.path.lexists(path)
