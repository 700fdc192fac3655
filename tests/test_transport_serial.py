"""SerialBus over real pseudo-terminals: opening, exclusivity, timed reads, a vanishing port."""

from __future__ import annotations

import doctest
import errno
import os
import subprocess
import sys
import time

import pytest
import serial

import drivers.transports.serial
import edge.simulate.pty
from drivers.errors import TransportError, TransportTimeout
from drivers.options import validate_options
from drivers.registry import bus_class
from drivers.transports.serial import ReadTimeout, SerialBus
from edge.simulate.pty import PtyPair


def make_bus(port: str, **options) -> SerialBus:
    values, problems = validate_options(SerialBus.options, {"port": str(port), **options})
    assert problems == []
    return SerialBus("rs485", values)


@pytest.fixture
def pty():
    with PtyPair() as pair:
        yield pair


def test_registry_names_this_class():
    assert bus_class("serial") is SerialBus
    assert SerialBus.kind == "serial"


# --- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({}, ("port", "is required")),
        ({"port": ""}, ("port", "must not be empty")),
        ({"port": "/dev/ttyUSB0", "baudrate": 9601},
         ("baudrate", "expected one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, got 9601")),
        ({"port": "/dev/ttyUSB0", "baudrate": "9600"}, ("baudrate", 'expected an integer, got "9600"')),
        ({"port": "/dev/ttyUSB0", "parity": "X"}, ("parity", 'expected one of "N", "E", "O", got "X"')),
        ({"port": "/dev/ttyUSB0", "bytesize": 9}, ("bytesize", "expected one of 7, 8, got 9")),
        ({"port": "/dev/ttyUSB0", "stopbits": 3}, ("stopbits", "expected one of 1, 2, got 3")),
        ({"port": "/dev/ttyUSB0", "timeout": "fast"},
         ("timeout", 'expected a duration like "30s" or "5m", got "fast"')),
        ({"port": "/dev/ttyUSB0", "timeout": "1ms"}, ("timeout", 'must be at least 0.01s, got "1ms"')),
        ({"port": "/dev/ttyUSB0", "timeout": "2m"}, ("timeout", 'must be at most 60s, got "2m"')),
        ({"port": "/dev/ttyUSB0", "speed": 9600}, ("speed", "unknown key")),
    ],
)
def test_option_problems(raw, problem):
    assert validate_options(SerialBus.options, raw)[1] == [problem]


def test_defaults():
    values, problems = validate_options(SerialBus.options, {"port": "/dev/ttyUSB0"})
    assert problems == []
    assert values == {"port": "/dev/ttyUSB0", "baudrate": 9600, "parity": "N", "bytesize": 8, "stopbits": 1,
                      "timeout": 1.0}


def test_construction_does_no_io(tmp_path):
    bus = make_bus(tmp_path / "ttyUSB9")
    assert not bus.is_open


# --- line timing ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("options", "char_time", "frame_gap"),
    [
        ({"baudrate": 9600}, 10 / 9600, 3.5 * 10 / 9600),
        ({"baudrate": 9600, "parity": "E"}, 11 / 9600, 3.5 * 11 / 9600),
        ({"baudrate": 19200, "stopbits": 2}, 11 / 19200, 3.5 * 11 / 19200),
        ({"baudrate": 4800, "bytesize": 7, "parity": "O"}, 10 / 4800, 3.5 * 10 / 4800),
        ({"baudrate": 38400}, 10 / 38400, 0.00175),
        ({"baudrate": 115200}, 10 / 115200, 0.00175),
    ],
)
def test_character_time_and_frame_gap(options, char_time, frame_gap):
    bus = make_bus("/dev/ttyUSB0", **options)
    assert bus.char_time == pytest.approx(char_time)
    assert bus.frame_gap == pytest.approx(frame_gap)


def test_wait_frame_gap_covers_transmission_and_gap(pty):
    with make_bus(pty.path, baudrate=1200) as bus:
        started = time.monotonic()
        bus.write(b"0123456789")
        bus.wait_frame_gap()
        waited = time.monotonic() - started
    # 10 characters at 1200 Bd are still on the wire for 83 ms, then 29 ms of silence.
    assert waited >= 10 * bus.char_time + bus.frame_gap
    assert pty.read(10, timeout=2.0) == b"0123456789"


# --- opening --------------------------------------------------------------------------------------

def test_missing_port(tmp_path):
    port = tmp_path / "ttyUSB9"
    with pytest.raises(TransportError) as err:
        make_bus(port).open()
    assert str(err.value) == f"serial port {port} does not exist — is the USB adapter plugged in?"
    assert err.value.reason == "transport"


def test_second_open_of_the_same_port_is_refused(pty):
    with make_bus(pty.path), pytest.raises(TransportError) as err:
        make_bus(pty.path).open()
    assert str(err.value) == (
        f"serial port {pty.path} is in use by another process — `fuser {pty.path}` shows which")


def test_port_is_free_again_after_close(pty):
    holder = make_bus(pty.path)
    holder.open()
    waiting = make_bus(pty.path)
    with pytest.raises(TransportError, match="in use"):
        waiting.open()
    holder.close()
    waiting.open()
    assert waiting.is_open
    waiting.close()


def test_not_a_serial_port(tmp_path):
    plain = tmp_path / "notes.txt"
    plain.write_text("not a tty")
    with pytest.raises(TransportError) as err:
        make_bus(plain).open()
    assert str(err.value) == f"{plain} is not a serial port"


_OPEN_AS_NOBODY = """
import os, sys
from drivers.errors import TransportError
from drivers.options import validate_options
from drivers.transports.serial import SerialBus
values, _ = validate_options(SerialBus.options, {"port": sys.argv[1]})
bus = SerialBus("rs485", values)
if os.geteuid() == 0:
    os.setgid(65534)
    os.setgroups([])
    os.setuid(65534)  # nobody: imports are done, only the open below meets the permission check
try:
    bus.open()
except TransportError as exc:
    print(exc)
else:
    print("opened")
"""


def test_permission_denied(pty):
    os.chmod(pty.path, 0)
    # A real process without the right to the port; as root (CI) the child drops to nobody first.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _OPEN_AS_NOBODY, pty.path], cwd=root, capture_output=True,
                          text=True, timeout=30, env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, done.stderr
    assert "add the service user to group dialout" in done.stdout


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.ENOENT, "serial port /dev/ttyUSB0 does not exist — is the USB adapter plugged in?"),
        (errno.EBUSY, "serial port /dev/ttyUSB0 is in use by another process — `fuser /dev/ttyUSB0` shows which"),
        (errno.EACCES, "no permission to open serial port /dev/ttyUSB0 — add the service user to group dialout "
                       "(sudo usermod -aG dialout <user>) and restart the service"),
        (errno.ENXIO, "cannot open serial port /dev/ttyUSB0: No such device or address"),
    ],
)
def test_open_errors_become_instructions(code, message):
    # The errno pyserial reports for each failure, as serialposix raises it.
    failure = serial.SerialException(code, f"could not open port /dev/ttyUSB0: [Errno {code}] {os.strerror(code)}")
    failure.strerror = os.strerror(code)
    assert str(make_bus("/dev/ttyUSB0")._open_error(failure)) == message


def test_open_close_are_idempotent(pty):
    bus = make_bus(pty.path)
    bus.open()
    bus.open()
    assert bus.is_open
    bus.close()
    bus.close()
    assert not bus.is_open


def test_io_on_a_closed_bus_is_a_transport_error(pty):
    bus = make_bus(pty.path)
    with pytest.raises(TransportError, match=f"serial port {pty.path} is not open"):
        bus.write(b"x")


# --- reading and writing --------------------------------------------------------------------------

def test_write_reaches_the_device(pty):
    with make_bus(pty.path) as bus:
        bus.write(b"\x01\x03\x00\x02")
        assert pty.read(4, timeout=2.0) == b"\x01\x03\x00\x02"


def test_read_returns_as_soon_as_n_bytes_are_there(pty):
    with make_bus(pty.path, timeout="30s") as bus:
        pty.write(b"abcdef")
        started = time.monotonic()
        assert bus.read(6) == b"abcdef"
        # The 30 s timeout would fail the test run (pytest-timeout) long before it expired.
        assert time.monotonic() - started < 30


def test_read_with_nothing_arriving_ends_at_the_deadline(pty):
    with make_bus(pty.path) as bus:
        started = time.monotonic()
        assert bus.read(4, timeout=0.1) == b""
        assert time.monotonic() - started >= 0.1


def test_read_exact_reports_how_much_arrived(pty):
    with make_bus(pty.path) as bus:
        pty.write(b"ab")
        with pytest.raises(ReadTimeout) as err:
            bus.read_exact(4, timeout=0.2)
    assert isinstance(err.value, TransportTimeout)
    assert str(err.value) == f"serial port {pty.path}: 2 of 4 bytes arrived within 0.2 s"
    assert (err.value.received, err.value.expected, err.value.reason) == (b"ab", 4, "timeout")


def test_read_exact_uses_the_bus_timeout_by_default(pty):
    with make_bus(pty.path, timeout="150ms") as bus:
        with pytest.raises(ReadTimeout, match="0 of 1 bytes arrived within 0.15 s"):
            bus.read_exact(1)


def test_reset_input_buffer_drops_unread_bytes(pty):
    with make_bus(pty.path) as bus:
        pty.write(b"stale")
        deadline = time.monotonic() + 5
        while pty.waiting_at_device() < 5:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        bus.reset_input_buffer()
        pty.write(b"new")
        assert bus.read(5, timeout=0.2) == b"new"


def test_loop_url_works_as_a_port():
    with make_bus("loop://", timeout="100ms") as bus:
        bus.write(b"echo")
        assert bus.read_exact(4) == b"echo"


# --- a port that goes away and comes back ---------------------------------------------------------

def test_unplugged_port_fails_then_reopen_recovers(tmp_path):
    link = tmp_path / "ttyUSB0"  # what udev's by-id symlink is to a USB adapter
    adapter = PtyPair()
    link.symlink_to(adapter.path)
    bus = make_bus(link, timeout="200ms")
    bus.open()
    try:
        adapter.write(b"ok")
        assert bus.read(2) == b"ok"

        adapter.close()  # pulled out
        link.unlink()
        with pytest.raises(TransportError) as err:
            bus.read(1)
        assert not isinstance(err.value, TransportTimeout)
        assert str(err.value).startswith(f"serial port {link} failed while reading: ")
        assert str(err.value).endswith("— was the USB adapter unplugged?")
        with pytest.raises(TransportError, match="failed while writing"):
            bus.write(b"x")
        with pytest.raises(TransportError, match="does not exist — is the USB adapter plugged in"):
            bus.reopen()

        with PtyPair() as replugged:
            link.symlink_to(replugged.path)
            bus.reopen()
            replugged.write(b"back")
            assert bus.read(4) == b"back"
            bus.close()
    finally:
        bus.close()


@pytest.mark.parametrize("module", [drivers.transports.serial, edge.simulate.pty])
def test_documentation_examples_hold(module):
    results = doctest.testmod(module)
    assert results.attempted > 0
    assert results.failed == 0


def test_a_read_with_its_own_timeout_works_on_a_tty_that_drops_parity(pty):
    # A pseudo-terminal silently drops PARENB and refuses it when the configuration is applied
    # again; a per-read timeout must not re-apply it (M-Bus and CJ/T 188 lines are 8E1).
    bus = make_bus(pty.path, baudrate=2400, parity="E", timeout="500ms")
    with bus:
        assert bus.read(3, timeout=0.05) == b""
        pty.write(b"abc")
        assert bus.read(3, timeout=1.0) == b"abc"
        pty.write(b"de")
        assert bus.read(2) == b"de"
