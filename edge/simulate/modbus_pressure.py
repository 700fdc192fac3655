"""A Modbus RTU pressure transmitter served by pymodbus's own serial server over pseudo-terminals.

pymodbus's ``ModbusSerialServer`` opens a tty path like any serial port, so
the simulator uses two pseudo-terminals joined by a small "cable" thread:

    driver ── ttyRS485 (symlink) → pty A ══ cable thread ══ pty B ← ModbusSerialServer

The cable is where wiring faults happen: :meth:`cut_wire` drops every byte
(a broken RS-485 pair), :meth:`unplug` closes the driver's pty and removes
the symlink (a USB adapter pulled out), :meth:`plug_in` brings a new one
back under the same name. :meth:`fail_with` makes the device itself answer
with a Modbus exception.

The holding registers follow the map documented in
``drivers/modbus_pressure/README.md``; their value follows a pressure
profile, a function of the seconds since start (see :func:`fire_main_profile`).
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import shutil
import tempfile
import threading
import time
from typing import Callable

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus_pressure import UNITS
from edge.simulate.pty import PtyPair

Profile = Callable[[float], float]

# Register map of the simulated transmitter (see the driver's README).
REG_ADDRESS, REG_BAUD, REG_UNIT, REG_DECIMALS, REG_VALUE, REG_RANGE_ZERO, REG_RANGE_FULL = range(7)
_REGISTER_COUNT = 7
_BAUD_CODES = {1200: 0, 2400: 1, 4800: 2, 9600: 3, 19200: 4, 38400: 5, 57600: 6, 115200: 7}
_START_TIMEOUT = 5.0


def fire_main_profile(
    baseline: float = 0.35,
    dip_at: float = 60.0,
    dip_seconds: float = 20.0,
    dip_to: float = 0.08,
    ramp: float = 2.0,
    noise: float = 0.004,
) -> Profile:
    """Fire-main pressure in MPa over time: ``baseline`` with a little ripple, one dip to ``dip_to``.

    The dip starts at ``dip_at`` s, reaches ``dip_to`` after ``ramp`` s, stays
    until ``dip_at + dip_seconds`` and recovers over another ``ramp`` s. The
    ripple is a fixed sum of sines (at most ±``noise``), so a run is repeatable.

    >>> profile = fire_main_profile(noise=0.0)
    >>> profile(10.0), profile(70.0), profile(100.0)
    (0.35, 0.08, 0.35)
    """

    def level(t: float) -> float:
        if t < dip_at or t >= dip_at + dip_seconds + ramp:
            return baseline
        if t < dip_at + ramp:
            return baseline + (dip_to - baseline) * (t - dip_at) / ramp
        if t < dip_at + dip_seconds:
            return dip_to
        return dip_to + (baseline - dip_to) * (t - dip_at - dip_seconds) / ramp

    def pressure(t: float) -> float:
        ripple = 0.6 * math.sin(2 * math.pi * t / 7.3) + 0.4 * math.sin(2 * math.pi * t / 2.9)
        return level(t) + noise * ripple

    return pressure


def encode_pressure(mpa: float, unit_code: int, decimals: int) -> int:
    """The register value (two's complement) a transmitter shows for ``mpa``; saturates at int16.

    >>> encode_pressure(0.35, unit_code=1, decimals=1)   # 350.0 kPa
    3500
    >>> hex(encode_pressure(-0.0125, unit_code=0, decimals=3))
    '0xfff4'
    """
    raw = round(mpa / UNITS[unit_code][1] * 10**decimals)
    return max(-0x8000, min(0x7FFF, raw)) & 0xFFFF


class _Cable(threading.Thread):
    """Copies bytes between the driver's pty and the server's pty, like a wire pair."""

    def __init__(self, server_fd: int, driver: PtyPair):
        super().__init__(name="sim-rs485-cable", daemon=True)
        self._server_fd = server_fd
        self._driver: PtyPair | None = driver
        self.cut = False
        self._wake_r, self._wake_w = os.pipe()
        self._pending: tuple[PtyPair | None, threading.Event] | None = None
        self._stopping = False
        for fd in (server_fd, driver.master_fd):
            os.set_blocking(fd, False)

    def swap(self, driver: PtyPair | None) -> None:
        """Replace the driver-side pty (``None``: unplugged); the old one is closed by this thread."""
        if driver is not None:
            os.set_blocking(driver.master_fd, False)
        done = threading.Event()
        self._pending = (driver, done)
        os.write(self._wake_w, b"s")
        if not done.wait(_START_TIMEOUT):
            raise RuntimeError("simulated cable did not take the new pty")

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"q")
        self.join(_START_TIMEOUT)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    def run(self) -> None:
        # Only this thread selects on and closes the driver pty, so no fd is closed under select().
        while not self._stopping:
            if self._pending is not None:
                (new, done), self._pending = self._pending, None
                old, self._driver = self._driver, new
                if old is not None:
                    old.close()
                done.set()
            fds = [self._wake_r, self._server_fd]
            if self._driver is not None:
                fds.append(self._driver.master_fd)
            ready, _, _ = select.select(fds, [], [])
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
                continue
            for fd in ready:
                self._carry(fd)

    def _carry(self, source: int) -> None:
        try:
            data = os.read(source, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the far end hung up; the next swap or stop tidies up
        driver = self._driver
        if self.cut or not data or driver is None:
            return
        target = driver.master_fd if source == self._server_fd else self._server_fd
        try:
            os.write(target, data)
        except OSError:
            pass  # nobody reads the other end and its buffer is full: bytes are lost, as on a line


class PressureTransmitterSim:
    """One transmitter at ``unit_id`` on a simulated RS-485 line; use as a context manager.

    ``profile`` is the pressure in MPa as a function of seconds since start
    (or a constant). ``unit_code`` and ``decimals`` are how the transmitter is
    set up to show it. The driver connects to :attr:`port`.
    """

    def __init__(
        self,
        unit_id: int = 1,
        profile: Profile | float | None = None,
        *,
        unit_code: int = 0,
        decimals: int = 3,
        full_scale_mpa: float = 1.6,
        baudrate: int = 9600,
        parity: str = "N",
        bytesize: int = 8,
        stopbits: int = 1,
        link_dir: str | os.PathLike | None = None,
    ):
        if baudrate not in _BAUD_CODES:
            raise ValueError(f"a transmitter of this map supports {sorted(_BAUD_CODES)} Bd, not {baudrate}")
        self.unit_id = unit_id
        self._profile = self._as_profile(profile if profile is not None else fire_main_profile())
        self._unit_code = unit_code
        self._decimals = decimals
        self._full_scale = full_scale_mpa
        self._serial = {"baudrate": baudrate, "parity": parity, "bytesize": bytesize, "stopbits": stopbits}
        self._link_dir = None if link_dir is None else os.fspath(link_dir)
        self._own_link_dir = False
        #: The device path the driver opens (a symlink to the current pty), set by :meth:`start`.
        self.port: str | None = None
        self._lock = threading.Lock()
        self._held_raw: int | None = None
        self._fault: ExcCodes | None = None
        self._requests: list[tuple[int, int, int]] = []
        self._t0 = time.monotonic()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._server_pty: PtyPair | None = None
        self._cable: _Cable | None = None

    @staticmethod
    def _as_profile(profile: Profile | float) -> Profile:
        if callable(profile):
            return profile
        constant = float(profile)
        return lambda _t: constant

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> PressureTransmitterSim:
        """Start serving; returns once pymodbus has the port open."""
        if self._link_dir is None:
            self._link_dir = tempfile.mkdtemp(prefix="linli-sim-")
            self._own_link_dir = True
        self.port = os.path.join(self._link_dir, "ttyRS485")
        self._server_pty = PtyPair()
        driver_pty = PtyPair()
        os.symlink(driver_pty.path, self.port)
        self._cable = _Cable(self._server_pty.master_fd, driver_pty)
        self._cable.start()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._serve_in_thread, name=f"sim-modbus-{self.unit_id}", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            self.stop()
            raise RuntimeError("pymodbus serial server did not start")
        if self._error is not None:
            error = self._error
            self.stop()
            raise RuntimeError(f"pymodbus serial server failed to start: {error}") from error
        return self

    def stop(self) -> None:
        """Stop the server and the cable, remove the ptys and the port symlink. Safe to call twice."""
        if self._loop is not None and self._stop_event is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
            self._thread.join(_START_TIMEOUT)
        self._loop = self._stop_event = self._thread = None
        if self._cable is not None:
            self._cable.stop()
            self._cable = None
        if self._server_pty is not None:
            self._server_pty.close()
            self._server_pty = None
        if self.port is not None and os.path.lexists(self.port):
            os.unlink(self.port)
        if self._own_link_dir:
            shutil.rmtree(self._link_dir, ignore_errors=True)
            self._link_dir, self._own_link_dir = None, False

    def __enter__(self) -> PressureTransmitterSim:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve_in_thread(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        device = SimDevice(
            id=self.unit_id,
            simdata=[SimData(address=0, count=_REGISTER_COUNT, values=0, datatype=DataType.REGISTERS)],
            action=self._on_access,
        )
        server = ModbusSerialServer(
            device, framer=FramerType.RTU, port=self._server_pty.path, trace_pdu=self._only_our_unit, **self._serial
        )
        await server.serve_forever(background=True)
        self._ready.set()
        await self._stop_event.wait()
        await server.shutdown()

    # --- the device ----------------------------------------------------------------------------
    def _only_our_unit(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        # On a shared RS-485 line a device stays silent for requests to other units;
        # returning None makes pymodbus drop the request.
        if not sending and pdu.dev_id != self.unit_id:
            return None
        return pdu

    async def _on_access(self, function_code, start_address, address, count, registers, set_values):
        with self._lock:
            self._requests.append((function_code, address, count))
            if self._fault is not None:
                return self._fault
            for register, value in self._registers().items():
                registers[register - start_address] = value
        return None

    def _registers(self) -> dict[int, int]:
        unit, decimals = self._unit_code, self._decimals
        # A unit code outside the table (set to test the driver) is shown as if it were MPa.
        shown_as = unit if unit in UNITS else 0
        if self._held_raw is not None:
            value = self._held_raw & 0xFFFF
        else:
            value = encode_pressure(self.pressure(), shown_as, decimals)
        return {
            REG_ADDRESS: self.unit_id,
            REG_BAUD: _BAUD_CODES[self._serial["baudrate"]],
            REG_UNIT: unit,
            REG_DECIMALS: decimals,
            REG_VALUE: value,
            REG_RANGE_ZERO: 0,
            REG_RANGE_FULL: encode_pressure(self._full_scale, shown_as, decimals),
        }

    def pressure(self) -> float:
        """The profile's pressure in MPa right now."""
        return self._profile(time.monotonic() - self._t0)

    # --- knobs for tests and the demo ----------------------------------------------------------
    @property
    def requests(self) -> list[tuple[int, int, int]]:
        """``(function, address, count)`` of every request this unit received, oldest first."""
        with self._lock:
            return list(self._requests)

    def set_display(self, unit_code: int, decimals: int) -> None:
        """Change the unit code and decimal places the transmitter reports (any value, even invalid)."""
        with self._lock:
            self._unit_code, self._decimals = unit_code, decimals

    def set_profile(self, profile: Profile | float) -> None:
        """Follow another pressure profile, restarting its clock."""
        with self._lock:
            self._profile = self._as_profile(profile)
            self._held_raw = None
            self._t0 = time.monotonic()

    def hold(self, raw: int) -> None:
        """Freeze the value register at ``raw`` (signed), e.g. to test a conversion exactly."""
        with self._lock:
            self._held_raw = raw

    def fail_with(self, exception_code: int) -> None:
        """Answer every request with this Modbus exception code until :meth:`heal`."""
        with self._lock:
            self._fault = ExcCodes(exception_code)

    def heal(self) -> None:
        with self._lock:
            self._fault = None

    def cut_wire(self) -> None:
        """Break the line: requests no longer reach the device, nothing comes back."""
        self._cable.cut = True

    def mend_wire(self) -> None:
        self._cable.cut = False

    def unplug(self) -> None:
        """Pull the USB adapter: the driver's tty hangs up and :attr:`port` disappears."""
        os.unlink(self.port)
        self._cable.swap(None)

    def plug_in(self) -> None:
        """Plug an adapter back in: a new tty appears under the same :attr:`port` name."""
        driver_pty = PtyPair()
        self._cable.swap(driver_pty)
        os.symlink(driver_pty.path, self.port)
