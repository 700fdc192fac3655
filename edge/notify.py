"""systemd's readiness and watchdog protocol (``sd_notify``), without libsystemd.

systemd passes the address of a datagram socket in ``NOTIFY_SOCKET``: a file
path, or an abstract socket written ``@name``. Each notification is one
datagram of newline-separated ``KEY=value`` assignments (see sd_notify(3)).
Outside systemd (a technician running ``linli run`` by hand, the tests) there is
no socket and every call is a no-op, so the agent code never needs to ask.

A notification that cannot be delivered is logged and reported as ``False``,
never raised: losing a STATUS line must not take down the agent. A lost
``WATCHDOG=1`` makes systemd restart us, which is the right outcome anyway.

>>> Notifier(environ={}).ready()
False
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger("linli.notify")


def _socket_address(value: str) -> str | None:
    """``NOTIFY_SOCKET`` as an address for ``sendto``, or None if unusable here."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # Linux abstract namespace
    if value.startswith("/"):
        return value
    # systemd ≥ 254 may also hand out "vsock:CID:PORT" for virtual machines; a Pi never gets one.
    log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; systemd notifications are off", value)
    return None


class Notifier:
    """Sends ``READY=1``, ``STATUS=…``, ``WATCHDOG=1``, ``STOPPING=1`` and ``RELOADING=1`` to systemd.

    ``environ`` defaults to ``os.environ``; it is read once, at construction.
    Safe to call from any thread.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw) if raw else None
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notification socket."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram. Returns whether it was sent."""
        if self._address is None:
            return False
        message = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message, self._address)
            except OSError as exc:
                if not self._warned:  # systemd gone or socket full: say it once, not every tick
                    log.warning("cannot notify systemd at %r: %s", self._address.replace("\0", "@"), exc)
                    self._warned = True
                return False
            self._warned = False
        return True

    def ready(self) -> bool:
        """Startup (or a reload) finished: ``READY=1``."""
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status`` (newlines would end the assignment, so they become spaces)."""
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """Feed the watchdog: ``WATCHDOG=1``."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """Shutdown has begun: ``STOPPING=1``."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """A reload has begun: ``RELOADING=1`` with ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, µs).

        systemd ≥ 253 uses the timestamp to tell this reload from an older one;
        older versions ignore it. Send :meth:`ready` when the reload is done.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds if systemd expects *this* process to feed it, else None.

        Feed it at least twice per interval. ``WATCHDOG_PID``, when set, must be our pid
        (otherwise the setting was inherited from a parent and is not ours).
        """
        if not self._watchdog_usec:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", self._watchdog_usec)
            return None
        return usec / 1_000_000 if usec > 0 else None

    def close(self) -> None:
        """Close the socket (a later notification opens a new one)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
