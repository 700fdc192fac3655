"""A Modbus RTU device with a register map given in Python, served by pymodbus's own serial server.

The driver under test opens :attr:`ModbusDeviceSim.port`, a symlink to one
side of a pseudo-terminal; pymodbus's ``ModbusSerialServer`` listens on a
second pty, and a "cable" thread copies bytes between the two:

    driver ── ttyRS485 (symlink) → pty A ══ cable thread ══ pty B ← ModbusSerialServer

The cable is where wiring faults happen: :meth:`~ModbusDeviceSim.cut_wire`
drops every byte (a broken RS-485 pair), :meth:`~ModbusDeviceSim.unplug`
closes the driver's pty and removes the symlink (a USB adapter pulled out),
:meth:`~ModbusDeviceSim.plug_in` brings a new one back under the same name.
:meth:`~ModbusDeviceSim.fail_with` makes the device itself answer with a
Modbus exception.

A register map is ``{register: word}``, where a word is an int (0–0xFFFF; a
negative int16 is taken as its two's complement) or a function of the
seconds since start returning one. All functions of one request are called
with the same instant, so the two words of a float32 always belong together.
:func:`place` spreads a typed value or profile over its registers, encoded by
pymodbus (independently of the driver's decoder):

>>> encode(10.0, "float32"), encode(10.0, "float32", "little"), encode(-2, "int32")
([16672, 0], [0, 16672], [65535, 65534])
>>> words = place(0x10, lambda t: 2.5 * t, "float32")
>>> [hex(words[r](4.0)) for r in (0x10, 0x11)]   # 10.0 at t = 4 s
['0x4120', '0x0']

Registers not in the map do not exist: reading them is answered with
exception 2 (illegal data address) by pymodbus's datastore, as a real
device does.
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
from typing import Callable, Iterable, Mapping

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge.simulate.pty import PtyPair

Profile = Callable[[float], float]
Word = int | Callable[[float], int]
RegisterMap = Mapping[int, Word]

_START_TIMEOUT = 5.0
_DATATYPES = {
    "int16": ModbusClientMixin.DATATYPE.INT16,
    "uint16": ModbusClientMixin.DATATYPE.UINT16,
    "int32": ModbusClientMixin.DATATYPE.INT32,
    "uint32": ModbusClientMixin.DATATYPE.UINT32,
    "float32": ModbusClientMixin.DATATYPE.FLOAT32,
}
_RANGES = {"int16": (-0x8000, 0x7FFF), "uint16": (0, 0xFFFF), "int32": (-0x8000_0000, 0x7FFF_FFFF),
           "uint32": (0, 0xFFFF_FFFF)}


# --- encoding values into registers ---------------------------------------------------------------------------
def encode(value: float, type_name: str = "uint16", word_order: str = "big") -> list[int]:
    """The registers a device sends for ``value`` as ``type_name`` (``big``: high word first).

    Integer types take integers (a float is rounded) and refuse values that do not fit.
    """
    if type_name not in _DATATYPES:
        raise ValueError(f"type must be one of {', '.join(_DATATYPES)}, got {type_name!r}")
    if word_order not in ("big", "little"):
        raise ValueError(f'word_order must be "big" or "little", got {word_order!r}')
    if type_name != "float32":
        value = round(value)
        low, high = _RANGES[type_name]
        if not low <= value <= high:
            raise ValueError(f"{value} does not fit a {type_name} ({low}…{high})")
    else:
        value = float(value)
    return ModbusClientMixin.convert_to_registers(value, _DATATYPES[type_name], word_order=word_order)


def place(start: int, value: float | Profile, type_name: str = "uint16", word_order: str = "big") -> dict[int, Word]:
    """Register map entries for ``value`` (a constant or a profile of time) at ``start`` and after."""
    if not callable(value):
        return dict(enumerate(encode(value, type_name, word_order), start))
    width = len(encode(0, type_name))

    def word(index: int) -> Callable[[float], int]:
        return lambda t: encode(value(t), type_name, word_order)[index]

    return {start + index: word(index) for index in range(width)}


def _word(value: int) -> int:
    if not -0x8000 <= value <= 0xFFFF:
        raise ValueError(f"a register holds 0…0xFFFF (or a negative int16), got {value}")
    return value & 0xFFFF


# --- the cable between the driver's pty and the server's ---------------------------------------------------------
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


# --- the device ------------------------------------------------------------------------------------------------
class ModbusDeviceSim:
    """One Modbus RTU device at ``unit`` on a simulated RS-485 line; use as a context manager.

    ``registers`` is the holding register map. ``input_registers`` is the
    input register map; ``None`` makes function 4 read the holding registers,
    as many simple transmitters do. The driver connects to :attr:`port`.
    """

    def __init__(
        self,
        unit: int = 1,
        registers: RegisterMap | None = None,
        input_registers: RegisterMap | None = None,
        *,
        baudrate: int = 9600,
        parity: str = "N",
        bytesize: int = 8,
        stopbits: int = 1,
        link_dir: str | os.PathLike | None = None,
    ):
        if not 1 <= unit <= 247:
            raise ValueError(f"unit must be 1–247, got {unit}")
        self.unit = unit
        self._maps: dict[str, dict[int, Word]] = {"holding": self._checked(registers or {})}
        if input_registers is not None:
            self._maps["input"] = self._checked(input_registers)
        self._serial = {"baudrate": baudrate, "parity": parity, "bytesize": bytesize, "stopbits": stopbits}
        self._link_dir = None if link_dir is None else os.fspath(link_dir)
        self._own_link_dir = False
        #: The device path the driver opens (a symlink to the current pty), set by :meth:`start`.
        self.port: str | None = None
        # Reentrant: a subclass may read its own state from a register function.
        self._lock = threading.RLock()
        self._fault: ExcCodes | None = None
        self._fault_registers: frozenset[int] | None = None
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
    def _checked(registers: RegisterMap) -> dict[int, Word]:
        checked: dict[int, Word] = {}
        for register, word in registers.items():
            if not 0 <= register <= 0xFFFF:
                raise ValueError(f"register numbers are 0…0xFFFF, got {register}")
            checked[register] = word if callable(word) else _word(word)
        return checked

    # --- life cycle ----------------------------------------------------------------------------
    def start(self):
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
        self._thread = threading.Thread(target=self._serve_in_thread, name=f"sim-modbus-{self.unit}", daemon=True)
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

    def __enter__(self):
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
        device = SimDevice(id=self.unit, simdata=self._simdata(), action=self._on_access)
        server = ModbusSerialServer(
            device, framer=FramerType.RTU, port=self._server_pty.path, trace_pdu=self._only_our_unit, **self._serial
        )
        await server.serve_forever(background=True)
        self._ready.set()
        await self._stop_event.wait()
        await server.shutdown()

    def _simdata(self):
        """pymodbus's layout of the maps: registers that exist, holes between them invalid."""
        holding = _blocks(self._maps["holding"])
        if "input" not in self._maps:
            return holding
        no_bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return (no_bits, list(no_bits), holding, _blocks(self._maps["input"]))

    # --- the device ----------------------------------------------------------------------------
    def _only_our_unit(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        # On a shared RS-485 line a device stays silent for requests to other units;
        # returning None makes pymodbus drop the request.
        if sending:
            return pdu
        if pdu.dev_id != self.unit:
            return None
        with self._lock:
            self._requests.append((pdu.function_code, getattr(pdu, "address", 0), getattr(pdu, "count", 0)))
        return pdu

    async def _on_access(self, function_code, start_address, address, count, registers, set_values):
        table = "input" if function_code == 4 and "input" in self._maps else "holding"
        with self._lock:
            if self._fails(address, count):
                return self._fault
            t = time.monotonic() - self._t0
            words = self._maps[table]
            for register in range(address, address + count):
                word = words[register]
                registers[register - start_address] = _word(word(t)) if callable(word) else word
        return None

    def _fails(self, address: int, count: int) -> bool:
        if self._fault is None:
            return False
        return self._fault_registers is None or not self._fault_registers.isdisjoint(range(address, address + count))

    # --- knobs for tests and the demo ----------------------------------------------------------
    @property
    def requests(self) -> list[tuple[int, int, int]]:
        """``(function, address, count)`` of every request this unit received, oldest first."""
        with self._lock:
            return list(self._requests)

    def elapsed(self) -> float:
        """Seconds since start (or since the clock was last restarted): the ``t`` register functions get."""
        with self._lock:
            return time.monotonic() - self._t0

    def restart_clock(self) -> None:
        """Make ``t`` count from 0 again."""
        with self._lock:
            self._t0 = time.monotonic()

    def set(self, register: int, value: Word, table: str = "holding") -> None:
        """Change what one existing register holds (a word or a function of time).

        On a device without its own input map, ``table="input"`` changes the shared register.
        """
        with self._lock:
            words = self._maps["input" if table == "input" and "input" in self._maps else "holding"]
            if register not in words:
                raise KeyError(f"register 0x{register:04X} is not in this device's {table} map")
            words[register] = value if callable(value) else _word(value)

    def fail_with(self, exception_code: int, registers: Iterable[int] | None = None) -> None:
        """Answer requests with this Modbus exception code until :meth:`heal`.

        With ``registers``, only requests that read one of them fail.
        """
        with self._lock:
            self._fault = ExcCodes(exception_code)
            self._fault_registers = None if registers is None else frozenset(registers)

    def heal(self) -> None:
        with self._lock:
            self._fault = None
            self._fault_registers = None

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


def _blocks(words: Mapping[int, Word]) -> list[SimData]:
    """One pymodbus block per run of consecutive registers; an empty map is one invalid register."""
    if not words:
        return [SimData(0, datatype=DataType.INVALID)]
    blocks: list[SimData] = []
    start = previous = None
    for register in sorted(words):
        if previous is not None and register == previous + 1:
            previous = register
            continue
        if start is not None:
            blocks.append(SimData(start, count=previous - start + 1, values=0, datatype=DataType.REGISTERS))
        start = previous = register
    blocks.append(SimData(start, count=previous - start + 1, values=0, datatype=DataType.REGISTERS))
    return blocks


# --- a ready-made device: the pump room's electromagnetic flow meter ----------------------------------------------
def pump_main_flow_profile(base: float = 4.0, peak: float = 18.0, period: float = 300.0,
                           noise: float = 0.2) -> Profile:
    """Flow on a building's pump-room main in m3/h: ``base`` at night, ``peak`` at the height of use.

    One "day" lasts ``period`` seconds (use rises and falls as sin²); the
    ripple is a fixed sum of sines (at most ±``noise``), so a run is
    repeatable. Never negative.

    >>> profile = pump_main_flow_profile(noise=0.0)
    >>> profile(0.0), profile(150.0), profile(300.0)
    (4.0, 18.0, 4.0)
    """

    def flow(t: float) -> float:
        use = math.sin(math.pi * t / period) ** 2
        ripple = 0.6 * math.sin(2 * math.pi * t / 6.1) + 0.4 * math.sin(2 * math.pi * t / 2.3)
        return max(0.0, base + (peak - base) * use + noise * ripple)

    return flow


class Totaliser:
    """Litres through the meter: the flow profile integrated over time, computed once per instant."""

    STEP = 0.5  # seconds per trapezoid

    def __init__(self, profile: Profile, litres: float):
        self.profile = profile
        self._t = 0.0
        self._litres = litres

    def at(self, t: float) -> float:
        if t < self._t:  # the simulator's clock was restarted: carry on from the new instant
            self._t = t
        elif t > self._t:
            steps = max(1, math.ceil((t - self._t) / self.STEP))
            dt = (t - self._t) / steps
            for step in range(steps):
                a = self._t + step * dt
                # m3/h × s = m3 × s/3600; × 1000 for litres: flow × dt / 3.6
                self._litres += (self.profile(a) + self.profile(a + dt)) / 2 * dt / 3.6
            self._t = t
        return self._litres


class FlowMeterSim(ModbusDeviceSim):
    """An electromagnetic flow meter on the pump room's main, on RS-485.

    Holding registers (function 4 reads the same):

    ======  ==========================================  ==========================
    0x0000  unit id                                      uint16
    0x0010  instantaneous flow, m3/h                     float32, low word first
    0x0012  forward totaliser, litres                    uint32, high word first
    ======  ==========================================  ==========================

    A map of our own, laid out as such meters commonly are (a float32 flow in
    word-swapped "CDAB" order next to a 32-bit totaliser); the driver's
    ``sample.toml`` reads it. The flow follows ``profile`` (m3/h over seconds
    since start); the totaliser integrates it from ``start_litres``.
    """

    REG_UNIT, REG_FLOW, REG_TOTAL = 0x0000, 0x0010, 0x0012

    def __init__(self, unit: int = 3, profile: Profile | float | None = None, *, start_litres: int = 1_250_000,
                 **serial):
        self._profile = as_profile(profile if profile is not None else pump_main_flow_profile())
        self._totaliser = Totaliser(self._profile, float(start_litres))
        registers = {
            self.REG_UNIT: unit,
            **place(self.REG_FLOW, lambda t: self._profile(t), "float32", "little"),
            **place(self.REG_TOTAL, lambda t: int(self._totaliser.at(t)) & 0xFFFF_FFFF, "uint32", "big"),
        }
        super().__init__(unit, registers, **serial)

    def flow(self) -> float:
        """The profile's flow in m3/h right now."""
        return self._profile(self.elapsed())

    def total_litres(self) -> int:
        """The totaliser right now, in whole litres (as the registers show it)."""
        with self._lock:
            return int(self._totaliser.at(time.monotonic() - self._t0)) & 0xFFFF_FFFF


def as_profile(profile: Profile | float) -> Profile:
    if callable(profile):
        return profile
    constant = float(profile)
    return lambda _t: constant
