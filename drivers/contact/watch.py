"""A contact on a GPIO pin, watched on its edges: debounced levels, activation counts, pin options.

Shared by the ``contact`` and ``bed_pad`` drivers. gpiozero reports every edge
of the pin on its own thread; :class:`PinWatcher` turns the edge's ticks into
``time.monotonic()`` seconds and hands ``(time, level)`` to a
:class:`StableLevel` under a lock — arithmetic only, no I/O — so a change that
comes and goes between two reads of the sampler is still seen by the next read.

A change is accepted once the new level has held for a while (``rise`` to
become true, ``fall`` to become false) and is dated at the edge that started
it. A contact uses the same time both ways (its ``debounce``); a bed pad lets
the pad stay open for ``hold`` before saying the bed is empty:

>>> pad = StableLevel(False, rise=0.5, fall=10.0)
>>> for t, level in [(100.0, True), (100.2, False), (100.21, True), (160.0, False), (163.0, True)]:
...     pad.edge(t, level)                 # lies down (with a bounce), turns over at 160 s
>>> pad.settle(200.0), pad.take_changes()
(True, [(100.0, True)])
>>> pad.edge(300.0, False); pad.settle(305.0), pad.settle(310.0), pad.take_changes()
(True, False, [(300.0, False)])
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from typing import Any, Callable

from gpiozero import GPIOZeroError, InputDevice

from drivers.base import Bus, Driver, Measurement
from drivers.errors import DriverError, TransportError
from drivers.options import Option, validate_options

log = logging.getLogger("linli.drivers.contact")

#: Accepted changes kept between two reads; more (a chattering or broken contact) drops the oldest.
MAX_CHANGES = 64
HOUR = 3600.0

PULL_OPTION = Option(
    "str", default="up", choices=("up", "down", "none"),
    help="up: the contact closes to ground; down: it closes to 3.3 V; none: something else drives the pin")
ACTIVE_HIGH_OPTION = Option(
    "bool", help="true: the quantity is true while the pin is high (3.3 V); default: true while the contact is "
                 "closed (false with pull up, true with pull down); required with pull none")
REPORT_EVERY_OPTION = Option(
    "duration", default="60s", min=0.0, max=86400.0,
    help="publish the state this often when nothing changes; a change goes out at the first read after it")
PIN_OPTION = Option("int", required=True, min=0, max=27, help="BCM number of the GPIO the contact is on")


def check_pull(values: dict[str, Any]) -> list[tuple[str, str]]:
    """With ``pull = "none"`` nothing says which level is "on": ``active_high`` must.

    >>> check_pull({"pull": "none", "active_high": None})
    [('active_high', 'is required with pull = "none": true when the pin is high means on, false when low does')]
    """
    if values.get("pull") == "none" and values.get("active_high") is None:
        return [("active_high", 'is required with pull = "none": true when the pin is high means on, '
                                 "false when low does")]
    return []


def on_when_high(pull: str, active_high: bool | None) -> bool:
    """Whether a high pin means "on": ``active_high`` when given, else "the contact is closed".

    >>> on_when_high("up", None), on_when_high("down", None), on_when_high("up", True)
    (False, True, True)
    """
    if active_high is not None:
        return active_high
    return pull == "down"  # a contact closing to 3.3 V pulls the pin high when closed


class StableLevel:
    """A level that changes only once the new level has held for ``rise`` (to true) or ``fall`` (to false) s.

    Fed with ``edge(t, level)`` in time order; ``settle(now)`` accepts a change
    that has held long enough by ``now`` and returns the accepted level.
    Accepted changes wait in :meth:`take_changes` (at most :data:`MAX_CHANGES`;
    :attr:`dropped` counts any lost from the front) and every change to true is
    counted in :attr:`activations`. A return to the accepted level cancels a
    pending change only once it has held for the shorter of ``rise`` and
    ``fall`` (the debounce); shorter returns are glitches and the pending
    change keeps its start.
    Edges repeating the current level (a missed edge on real hardware) change
    nothing. Not thread-safe: the caller locks.

    >>> pad = StableLevel(False, rise=0.5, fall=10.0, now=0.0)   # a bed pad: empty
    >>> pad.edge(0.0, True); pad.settle(1.0)                     # lies down
    True
    >>> pad.edge(100.0, False); pad.edge(108.0, True); pad.edge(108.001, False)  # up; a 1 ms spike at 108 s
    >>> pad.settle(109.0), pad.settle(110.0)                     # the hold still counts from 100 s
    (True, False)
    >>> pad.take_changes()
    [(0.0, True), (100.0, False)]
    """

    def __init__(self, level: bool, *, rise: float, fall: float, now: float | None = None):
        self.level = level
        self.rise = rise
        self.fall = fall
        self.activations = Activations()
        self.dropped = 0
        self._pending: tuple[float, bool] | None = None  # (since, level) not yet held long enough
        self._returned: float | None = None  # when the pin went back to the accepted level meanwhile
        self._changes: deque[tuple[float, bool]] = deque(maxlen=MAX_CHANGES)
        self._last = -math.inf if now is None else now

    def edge(self, t: float, level: bool) -> None:
        """The pin went to ``level`` at ``t`` (seconds, monotonic)."""
        t = max(t, self._last)  # ticks converted to monotonic time may jitter backwards by microseconds
        self._last = t
        self.settle(t)
        if self._pending is None:
            if level != self.level:
                self._pending, self._returned = (t, level), None
        elif level == self._pending[1]:
            self._returned = None  # the return was a glitch: the new level holds on from its first edge
        elif self._returned is None:
            # Back to the accepted level: the change is cancelled only if that return itself holds
            # (a spike on a long cable must not restart a bed pad's hold time).
            self._returned = t

    def settle(self, now: float) -> bool:
        """Accept a pending change that has held until ``now``; the accepted level."""
        if self._pending is not None:
            since, level = self._pending
            if self._returned is not None:
                if now - self._returned >= min(self.rise, self.fall):
                    self._pending = self._returned = None  # the old level is back for good
            elif now - since >= (self.rise if level else self.fall):
                self._pending = None
                self.level = level
                if len(self._changes) == MAX_CHANGES:
                    self.dropped += 1
                self._changes.append((since, level))
                if level:
                    self.activations.add(since)
        return self.level

    def take_changes(self) -> list[tuple[float, bool]]:
        """The accepted changes since the last call, oldest first, as ``(since, level)``."""
        changes = list(self._changes)
        self._changes.clear()
        return changes


class Activations:
    """Activations in a rolling hour, counted per whole second so memory stays bounded (≤ 3600 entries).

    >>> a = Activations()
    >>> for t in (10.2, 10.7, 900.0, 3605.0):
    ...     a.add(t)
    >>> a.last_hour(3605.0), a.last_hour(3609.9), a.last_hour(3610.0), a.last_hour(7300.0)
    (4, 4, 2, 0)
    """

    def __init__(self):
        self._seconds: deque[list[int]] = deque()  # [whole second, count], oldest first

    def add(self, t: float) -> None:
        second = int(t)
        if self._seconds and self._seconds[-1][0] >= second:
            self._seconds[-1][1] += 1
        else:
            self._seconds.append([second, 1])

    def last_hour(self, now: float) -> int:
        """Activations within the hour before ``now`` (an activation counts until 3600 s after its second)."""
        while self._seconds and self._seconds[0][0] <= now - HOUR:
            self._seconds.popleft()
        return sum(count for _, count in self._seconds)


class PinWatcher:
    """Owns a GPIO input for one sensor and feeds its edges, as "on" true/false, to ``edge(t, on)``.

    ``edge`` runs on gpiozero's thread (or, with ``MockFactory``, on the thread
    that drives the pin) and must only do arithmetic under the caller's lock.
    """

    def __init__(self, sensor_id: str, pin: int, pull: str, high_is_on: bool):
        self.sensor_id = sensor_id
        self.pin = pin
        self.pull = pull
        self.high_is_on = high_is_on
        self._device: InputDevice | None = None
        self._edge: Callable[[float, bool], None] | None = None

    @property
    def opened(self) -> bool:
        return self._device is not None

    def open(self, bus: Bus, edge: Callable[[float, bool], None]) -> None:
        """Reserve the pin and start reporting its edges to ``edge``; a no-op when open."""
        if self._device is not None:
            return
        factory = getattr(bus, "factory", None)
        if factory is None:
            raise TransportError(f"GPIO bus {bus.name} is not open")
        pull_up = {"up": True, "down": False, "none": None}[self.pull]
        try:
            # active_state is gpiozero's own business with a floating pin only; the levels read here are raw.
            device = InputDevice(self.pin, pull_up=pull_up, active_state=True if pull_up is None else None,
                                 pin_factory=factory)
            self._device, self._edge = device, edge
            device.pin.edges = "both"
            device.pin.when_changed = self._changed
        except GPIOZeroError as exc:
            self.close()
            raise TransportError(f"GPIO{self.pin} cannot be used for sensor {self.sensor_id}: {exc}") from exc

    def is_on(self) -> bool:
        """The contact's state right now, read from the pin."""
        if self._device is None:
            raise TransportError(f"GPIO{self.pin} of sensor {self.sensor_id} is not open")
        return self._on(self._device.pin.state)

    def _on(self, state: Any) -> bool:
        return bool(state) == self.high_is_on

    def _changed(self, ticks: Any, state: Any) -> None:
        # gpiozero's thread. The edge's own ticks date it, so a late callback does not shift it.
        device = self._device
        if device is None:
            return
        factory = device.pin_factory
        age = max(0.0, factory.ticks_diff(factory.ticks(), ticks))
        self._edge(time.monotonic() - age, self._on(state))

    def close(self) -> None:
        """Release the pin; safe to call twice."""
        device, self._device = self._device, None
        if device is not None:
            device.close()


class WatchedInput(Driver):
    """A driver for one contact on a GPIO pin: edges in, debounced changes out at each read.

    Subclasses set ``rise`` and ``fall`` (seconds, see :class:`StableLevel`) in
    ``__init__`` and turn a read's values into measurements in
    :meth:`measurements`. ``read()`` returns every accepted change since the
    previous read, in order, each as its own measurement — a pump that started
    and stopped between two reads gives ``true`` then ``false`` — or, when
    nothing changed, the current state once ``report_every`` has passed since
    the last report, else nothing.
    """

    bus_kind = "gpio"
    read_at_stop = True
    rise: float
    fall: float

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        defaults, _ = validate_options(self.options, {})
        super().__init__(sensor_id, {**defaults, **options}, bus)
        self.pin: int = self.config["pin"]
        self.report_every: float = self.config["report_every"]
        high_is_on = on_when_high(self.config["pull"], self.config["active_high"])
        self._watcher = PinWatcher(sensor_id, self.pin, self.config["pull"], high_is_on)
        self._lock = threading.Lock()  # the level is fed on gpiozero's thread and read on the bus thread
        self._level: StableLevel | None = None
        self._next_report = -math.inf

    def open(self) -> None:
        """Start watching the pin; a no-op when watching. Counts survive a close and a new open."""
        if self._watcher.opened:
            return
        self._watcher.open(self.bus, self._on_edge)
        with self._lock:
            # Read under the lock: an edge reported meanwhile waits and lands after this level, in order.
            on, now = self._watcher.is_on(), time.monotonic()
            if self._level is None:
                self._level = StableLevel(on, rise=self.rise, fall=self.fall, now=now)
            else:
                self._level.edge(now, on)  # whatever happened while closed is known only as the level now

    def _on_edge(self, t: float, on: bool) -> None:
        with self._lock:
            if self._level is not None:
                self._level.edge(t, on)

    def read(self) -> list[Measurement]:
        if not self._watcher.opened or self._level is None:
            raise DriverError(f"{self.name} {self.sensor_id} on GPIO{self.pin} is not open")
        now = time.monotonic()
        with self._lock:
            # The pin as it is now, as one more edge: a change whose edge the hardware missed still
            # shows up (after its debounce), and one whose edges all came changes nothing.
            self._level.edge(now, self._watcher.is_on())
            level = self._level.settle(now)
            changes = self._level.take_changes()
            dropped, self._level.dropped = self._level.dropped, 0
            activations = self._level.activations.last_hour(now)
        if not changes and now < self._next_report:
            return []
        self._next_report = now + self.report_every
        quality, reason = "good", None
        if dropped:
            log.warning("sensor %s: the contact on GPIO%d changed more than %d times since the last read; "
                        "the oldest %d changes are not published (a broken contact, or debounce too short?)",
                        self.sensor_id, self.pin, MAX_CHANGES, dropped)
            quality, reason = "uncertain", "chatter"
        values = [value for _, value in changes] or [level]
        return self.measurements(values, activations, quality, reason)

    def measurements(self, values: list[bool], activations: int, quality: str,
                     reason: str | None) -> list[Measurement]:
        """What one report publishes: ``values`` are the changes in order, or the current state."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop watching and release the pin; safe to call twice."""
        self._watcher.close()
