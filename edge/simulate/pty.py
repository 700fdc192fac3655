"""A pseudo-terminal pair: a real tty for pyserial on one side, a plain fd for a simulator on the other.

The driver opens :attr:`PtyPair.path` exactly like ``/dev/ttyUSB0``; the
simulator reads and writes :attr:`PtyPair.master_fd`. Closing the pair is
what unplugging a USB adapter looks like to the driver: its reads and writes
fail and the device path disappears.

>>> with PtyPair() as pty:
...     port = os.open(pty.path, os.O_RDWR | os.O_NOCTTY)
...     _ = os.write(port, b"hello")
...     print(pty.read(5, timeout=1.0))
...     os.close(port)
b'hello'
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import time
import tty


class PtyPair:
    """A raw-mode pseudo-terminal: ``path`` for the device side, ``master_fd`` for the simulator."""

    def __init__(self) -> None:
        # Keeping our own slave fd open keeps the tty alive (and the master free of EIO)
        # while no driver has it open, like a plugged-in adapter nobody uses yet.
        self.master_fd, self._slave_fd = os.openpty()
        # Raw mode: no echo, no line editing, no CR/LF translation — bytes pass as on a wire.
        tty.setraw(self._slave_fd)
        self.path = os.ttyname(self._slave_fd)
        self.closed = False

    def write(self, data: bytes) -> None:
        """Send bytes to whoever has :attr:`path` open."""
        view = memoryview(data)
        while view:
            written = os.write(self.master_fd, view)
            view = view[written:]

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes the device side sent, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        data = b""
        while len(data) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([self.master_fd], [], [], remaining)
            if not ready:
                break
            data += os.read(self.master_fd, n - len(data))
        return data

    def waiting_at_device(self) -> int:
        """Bytes sent with :meth:`write` that the device side has not read yet."""
        count = fcntl.ioctl(self._slave_fd, termios.FIONREAD, struct.pack("i", 0))
        return struct.unpack("i", count)[0]

    def close(self) -> None:
        """Close both ends; the device side sees the line hang up. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for fd in (self.master_fd, self._slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass  # already gone with the process's other fds; nothing to release

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
