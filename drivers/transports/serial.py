"""A serial port (RS-485/RS-232 adapter, UART) as a bus shared by several devices.

Every read has a deadline; every failure of the port itself becomes a
:class:`~drivers.errors.TransportError` whose message tells a technician what
to do (plug the adapter in, free the port, join group ``dialout``).

>>> bus = SerialBus("rs485", {"port": "loop://", "baudrate": 9600, "parity": "E",
...                           "bytesize": 8, "stopbits": 1, "timeout": 0.1})
>>> round(bus.char_time * 1000, 3)  # start + 8 data + parity + stop bits at 9600 Bd, in ms
1.146
>>> with bus:
...     bus.write(b"ping")
...     bus.read(4, timeout=0.1)
b'ping'
"""

from __future__ import annotations

import errno
import termios
import time
from typing import Any

import serial

from drivers.base import Bus
from drivers.errors import TransportError, TransportTimeout
from drivers.options import Option, validate_options

STANDARD_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

#: Above 19200 Bd the Modbus RTU spec fixes the inter-frame gap at 1.75 ms
#: instead of 3.5 character times (Modbus over Serial Line v1.02, §2.5.1.1).
_FAST_BAUDRATE = 19200
_FAST_FRAME_GAP = 0.00175

# pyserial lets termios.error (not an OSError) escape from tcflush and reconfiguration.
_PORT_ERRORS = (serial.SerialException, OSError, termios.error)

_IN_USE_ERRNOS = (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK)
_PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM)


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


class ReadTimeout(TransportTimeout):
    """Fewer bytes than expected arrived before the deadline.

    ``received`` holds the bytes that did arrive (possibly none).
    """

    def __init__(self, message: str, received: bytes, expected: int):
        super().__init__(message)
        self.received = received
        self.expected = expected


class SerialBus(Bus):
    """One serial port, opened exclusively, with timed reads.

    ``options`` are the values :func:`~drivers.options.validate_options`
    returns for :attr:`options` (``timeout`` in seconds); keys left out take
    their defaults.
    """

    kind = "serial"
    options = {
        "port": Option("str", required=True, check=_non_empty,
                       help="device path (/dev/ttyUSB0, /dev/serial/by-id/…) or a pyserial URL"),
        "baudrate": Option("int", default=9600, choices=STANDARD_BAUDRATES, help="line speed in baud"),
        "parity": Option("str", default="N", choices=("N", "E", "O"), help="N(one), E(ven) or O(dd)"),
        "bytesize": Option("int", default=8, choices=(7, 8), help="data bits per character"),
        "stopbits": Option("int", default=1, choices=(1, 2), help="stop bits per character"),
        "timeout": Option("duration", default="1s", min=0.01, max=60.0,
                          help="how long to wait for a device to answer"),
    }

    def __init__(self, name: str, options: dict[str, Any]):
        defaults, _ = validate_options(self.options, {})
        super().__init__(name, {**defaults, **options})
        self.port: str = self.config["port"]
        self.baudrate: int = self.config["baudrate"]
        self.timeout: float = self.config["timeout"]
        self._serial: serial.SerialBase | None = None
        self._read_timeout: float | None = None
        # Monotonic time from which the line has been (or will be) silent.
        self._quiet_since = 0.0

    # --- line timing ---------------------------------------------------------------------------
    @property
    def char_time(self) -> float:
        """Seconds one character takes on the wire (start, data, parity and stop bits)."""
        bits = 1 + self.config["bytesize"] + (0 if self.config["parity"] == "N" else 1) + self.config["stopbits"]
        return bits / self.baudrate

    @property
    def frame_gap(self) -> float:
        """Silence that separates two Modbus RTU frames: 3.5 characters, 1.75 ms above 19200 Bd.

        >>> SerialBus("b", {"port": "loop://", "baudrate": 115200}).frame_gap
        0.00175
        """
        if self.baudrate > _FAST_BAUDRATE:
            return _FAST_FRAME_GAP
        return 3.5 * self.char_time

    def wait_frame_gap(self) -> None:
        """Block until the line has been silent for :attr:`frame_gap` since the last byte."""
        remaining = self._quiet_since + self.frame_gap - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    # --- life cycle ----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        """Open the port exclusively; a no-op when it is already open."""
        if self._serial is not None:
            return
        try:
            port = serial.serial_for_url(
                self.port,
                do_not_open=True,
                baudrate=self.baudrate,
                bytesize=self.config["bytesize"],
                parity=self.config["parity"],
                stopbits=self.config["stopbits"],
                timeout=self.timeout,
                write_timeout=self.timeout,
                exclusive=True,
            )
            port.open()
        except serial.SerialException as exc:
            raise self._open_error(exc) from exc
        except (ValueError, OSError, termios.error) as exc:
            raise TransportError(f"cannot open serial port {self.port}: {exc}") from exc
        self._serial = port
        self._read_timeout = self.timeout
        self._quiet_since = time.monotonic()

    def _open_error(self, exc: serial.SerialException) -> TransportError:
        code = exc.errno
        if code is None and isinstance(exc.__context__, termios.error):
            # pyserial wraps the failed tcgetattr of a file that is no tty without its errno.
            code = exc.__context__.args[0]
        if code == errno.ENOENT:
            return TransportError(f"serial port {self.port} does not exist — is the USB adapter plugged in?")
        if code in _IN_USE_ERRNOS:
            return TransportError(
                f"serial port {self.port} is in use by another process — `fuser {self.port}` shows which")
        if code in _PERMISSION_ERRNOS:
            return TransportError(
                f"no permission to open serial port {self.port} — add the service user to group dialout "
                "(sudo usermod -aG dialout <user>) and restart the service")
        if code in (errno.ENOTTY, errno.EINVAL):
            return TransportError(f"{self.port} is not a serial port")
        reason = exc.strerror or str(exc)
        return TransportError(f"cannot open serial port {self.port}: {reason}")

    def close(self) -> None:
        """Close the port; safe to call twice and after the device vanished."""
        port, self._serial = self._serial, None
        if port is None:
            return
        try:
            port.close()
        except _PORT_ERRORS:
            pass  # the adapter is gone already; nothing left to release

    def reopen(self) -> None:
        """Close and open again, e.g. after the USB adapter was unplugged and plugged back in."""
        self.close()
        self.open()

    # --- I/O -----------------------------------------------------------------------------------
    def _port(self) -> serial.SerialBase:
        if self._serial is None:
            raise TransportError(f"serial port {self.port} is not open")
        return self._serial

    def _failed(self, action: str, exc: Exception) -> TransportError:
        # termios.error carries (errno, text) and prints as a tuple.
        reason = exc.args[1] if isinstance(exc, termios.error) and len(exc.args) == 2 else exc
        return TransportError(
            f"serial port {self.port} failed while {action}: {reason} — was the USB adapter unplugged?")

    def write(self, data: bytes) -> None:
        """Send ``data``; the line counts as busy until it has been clocked out."""
        port = self._port()
        try:
            port.write(data)
        except serial.SerialTimeoutException as exc:
            raise TransportError(
                f"serial port {self.port} could not send within {self.timeout:g} s — check the adapter") from exc
        except _PORT_ERRORS as exc:
            raise self._failed("writing", exc) from exc
        self._quiet_since = time.monotonic() + len(data) * self.char_time

    def read(self, n: int, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes, returning early only when all ``n`` arrived or the deadline passed."""
        port = self._port()
        timeout = self.timeout if timeout is None else max(timeout, 0.0)
        try:
            if timeout != self._read_timeout:
                self._set_read_timeout(port, timeout)
            data = port.read(n)
        except _PORT_ERRORS as exc:
            raise self._failed("reading", exc) from exc
        if data:
            self._quiet_since = time.monotonic()
        return data

    def _set_read_timeout(self, port: serial.SerialBase, timeout: float) -> None:
        # pyserial's timeout setter re-applies the whole termios configuration, although its
        # POSIX and URL ports time reads with select() and never put the timeout into termios.
        # Re-applying fails on ttys that drop settings they do not support (a pseudo-terminal
        # drops PARENB, then refuses it the second time with EINVAL), so only the attribute the
        # read loop consults is changed where the port has it.
        if hasattr(port, "_timeout"):
            port._timeout = timeout
        else:
            port.timeout = timeout
        self._read_timeout = timeout

    def read_exact(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly ``n`` bytes, or :class:`ReadTimeout` saying how many arrived in time."""
        timeout = self.timeout if timeout is None else timeout
        data = self.read(n, timeout)
        if len(data) < n:
            raise ReadTimeout(
                f"serial port {self.port}: {len(data)} of {n} bytes arrived within {timeout:g} s", data, n)
        return data

    def reset_input_buffer(self) -> None:
        """Discard whatever arrived unasked (a late answer, line noise)."""
        try:
            self._port().reset_input_buffer()
        except _PORT_ERRORS as exc:
            raise self._failed("flushing input", exc) from exc
