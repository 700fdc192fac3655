"""A shared RS-485 / M-Bus line behind a pseudo-terminal, with simulated devices on it.

The driver opens :attr:`SimulatedLine.path` like ``/dev/ttyUSB0``. A thread on
the other side of the pty splits what the master sends into requests by line
silence (1.5 character times, as a UART receiver does), offers every request
to every attached device, and writes the answers back paced at the line's
character time, so a 2400 Bd line takes as long on the pty as on copper:

    driver ── path (symlink) → pty ══ line thread ══ device.answer(request) for each device

Devices only need ``answer(request) -> bytes | None`` (``None``: not for me).
Faults are the line's business, per device: ``silent`` (the meter is dead or
its wires are cut), ``garble`` (one byte of each answer flipped, as noise on a
long line does), ``noise`` (junk bytes before each answer). Two devices
answering the same request collide; the simulation sends one answer after
the other, which a master sees as an overlong or garbled answer — as it would.

>>> class Echo:
...     def answer(self, request):
...         return request[::-1] if request.startswith(b"hi") else None
>>> with SimulatedLine([Echo()], baudrate=9600) as line:
...     fd = os.open(line.path, os.O_RDWR | os.O_NOCTTY)
...     _ = os.write(fd, b"hi!")
...     print(_read_all(fd, 3))
...     os.close(fd)
b'!ih'
"""

from __future__ import annotations

import os
import select
import shutil
import tempfile
import threading
import time
from typing import Protocol, Sequence

from edge.simulate.pty import PtyPair

FAULTS = ("silent", "garble", "noise")
_NOISE = bytes((0x00, 0xFF, 0x3C, 0x00))
_CONTROL_TIMEOUT = 5.0


class LineDevice(Protocol):
    """What a simulated device on the line must do."""

    def answer(self, request: bytes) -> bytes | None:
        """The reply to one request, or ``None`` when it is not for this device."""


def _read_all(fd: int, n: int, timeout: float = 2.0) -> bytes:
    """Up to ``n`` bytes from ``fd`` within ``timeout`` (for the doctest)."""
    deadline, data = time.monotonic() + timeout, b""
    while len(data) < n and (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            data += os.read(fd, n - len(data))
    return data


class SimulatedLine:
    """A bus line with devices on it; use as a context manager or ``start()``/``stop()``."""

    def __init__(
        self,
        devices: Sequence[LineDevice] = (),
        *,
        baudrate: int = 2400,
        parity: str = "E",
        bytesize: int = 8,
        stopbits: int = 1,
        answer_delay: float | None = None,
        pace: bool = True,
        name: str = "ttyBUS",
    ):
        bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
        #: Seconds one character takes on this line.
        self.char_time = bits / baudrate
        #: Silence before a device answers; by default the 11 bit times EN 13757-2 sets as an
        #: M-Bus slave's shortest turn-around, which RS-485 meters need at least as well.
        self.answer_delay = 11 / baudrate if answer_delay is None else answer_delay
        self.pace = pace
        self._name = name
        self._devices: list[LineDevice] = list(devices)
        self._faults: dict[int, str] = {}
        self._lock = threading.Lock()
        #: Every request seen, in order; and per request (monotonic time, request bytes, answer bytes).
        self.requests: list[bytes] = []
        self.traffic: list[tuple[float, int, int]] = []
        #: The stable device path (a symlink to the current pty); set by :meth:`start`.
        self.path: str = ""
        self._dir: str | None = None
        self._pty: PtyPair | None = None
        self._pending_pty: tuple[PtyPair | None, threading.Event] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_r = self._wake_w = -1

    # --- devices and faults -----------------------------------------------------------------------
    def attach(self, device: LineDevice) -> None:
        with self._lock:
            self._devices.append(device)

    def detach(self, device: LineDevice) -> None:
        with self._lock:
            self._devices.remove(device)
            self._faults.pop(id(device), None)

    def set_fault(self, device: LineDevice, fault: str | None) -> None:
        """``None`` heals; ``silent``, ``garble`` or ``noise`` as described above."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS} or None, got {fault!r}")
        with self._lock:
            if fault is None:
                self._faults.pop(id(device), None)
            else:
                self._faults[id(device)] = fault

    # --- life cycle ---------------------------------------------------------------------------------
    def start(self) -> SimulatedLine:
        self._dir = tempfile.mkdtemp(prefix="linli-line-")
        self.path = os.path.join(self._dir, self._name)
        self._pty = PtyPair()
        os.symlink(self._pty.path, self.path)
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"sim-line-{self._name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, close the pty, remove the path. Safe to call twice."""
        if self._thread is None:
            return
        self._stopping = True
        os.write(self._wake_w, b"q")
        self._thread.join(_CONTROL_TIMEOUT)
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self._pty is not None:
            self._pty.close()
            self._pty = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SimulatedLine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def unplug(self) -> None:
        """Pull the USB adapter: the driver's tty hangs up and :attr:`path` disappears."""
        os.unlink(self.path)
        self._swap(None)

    def plug_in(self) -> None:
        """Plug an adapter back in: a new tty appears under the same :attr:`path`."""
        pty = PtyPair()
        self._swap(pty)
        os.symlink(pty.path, self.path)

    def _swap(self, pty: PtyPair | None) -> None:
        done = threading.Event()
        self._pending_pty = (pty, done)
        os.write(self._wake_w, b"s")
        if not done.wait(_CONTROL_TIMEOUT):
            raise RuntimeError("simulated line did not take the new pty")

    # --- the line thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        # Only this thread reads, writes and closes the pty, so no fd is closed under select().
        request, first_at, last_at = b"", 0.0, 0.0
        gap = max(1.5 * self.char_time, 0.002)
        while not self._stopping:
            if self._pending_pty is not None:
                (new, done), self._pending_pty = self._pending_pty, None
                old, self._pty = self._pty, new
                if old is not None:
                    old.close()
                request = b""
                done.set()
            fds = [self._wake_r] + ([self._pty.master_fd] if self._pty is not None else [])
            timeout = None if not request else max(0.0, last_at + gap - time.monotonic())
            ready, _, _ = select.select(fds, [], [], timeout)
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
                continue
            if ready:
                try:
                    chunk = os.read(self._pty.master_fd, 4096)
                except OSError:
                    chunk = b""  # nobody has the port open; nothing was sent
                now = time.monotonic()
                if chunk:
                    first_at = now if not request else first_at
                    request, last_at = request + chunk, now
                continue
            if request:
                self._serve(request, first_at)
                request = b""

    def _serve(self, request: bytes, first_at: float) -> None:
        # On copper the last request byte arrives len × char time after the first.
        self._sleep_until(first_at + len(request) * self.char_time if self.pace else 0.0)
        with self._lock:
            self.requests.append(request)
            devices = [(d, self._faults.get(id(d))) for d in self._devices]
        reply = b""
        for device, fault in devices:
            answer = device.answer(request)
            if answer is None or fault == "silent":
                continue
            if fault == "garble":
                middle = len(answer) // 2
                answer = answer[:middle] + bytes((answer[middle] ^ 0x5A,)) + answer[middle + 1:]
            elif fault == "noise":
                answer = _NOISE + answer
            reply += answer
        if reply:
            time.sleep(self.answer_delay)
            self._send(reply)
        with self._lock:
            self.traffic.append((first_at, len(request), len(reply)))

    def _send(self, reply: bytes) -> None:
        pty = self._pty
        if pty is None:
            return
        start = time.monotonic()
        try:
            if not self.pace:
                pty.write(reply)
                return
            for index in range(len(reply)):
                self._sleep_until(start + index * self.char_time)
                pty.write(reply[index:index + 1])
        except OSError:
            return  # the adapter was pulled mid-answer

    @staticmethod
    def _sleep_until(moment: float) -> None:
        delay = moment - time.monotonic()
        if delay > 0:
            time.sleep(delay)
