"""Dry contacts and bed pads driving gpiozero ``MockFactory`` pins: pumps that start and stop, people in bed.

A :class:`ContactSim` closes and opens a simulated contact, with contact
bounce, either at once (:meth:`ContactSim.set`) or on a schedule of
``(seconds from start, closed)`` steps played by a thread. Schedules:
:func:`pump_starts` (a jockey pump topping up the pressure) and
:func:`night_in_bed` (lying down, turning over, a trip to the toilet).

>>> pump_starts(every=60.0, run=8.0, count=2)
[(0.0, True), (8.0, False), (60.0, True), (68.0, False)]
>>> night_in_bed(speed=60.0)[:3]       # a night played 60 times faster
[(0.0, True), (30.0, False), (30.05, True)]
"""

from __future__ import annotations

import threading
import time
from typing import Iterable

Step = tuple[float, bool]


def pump_starts(every: float, run: float, count: int, first: float = 0.0) -> list[Step]:
    """A pump contact closing every ``every`` s for ``run`` s, ``count`` times from ``first``."""
    steps: list[Step] = []
    for n in range(count):
        start = first + n * every
        steps += [(start, True), (start + run, False)]
    return steps


#: A night in bed as (seconds from lying down, pad closed): turning over (the pad opens for
#: 3 s, 2 s), the toilet at 2 a.m. (6 minutes out of bed), getting up in the morning.
NIGHT = (
    (0.0, True),
    (1800.0, False), (1803.0, True),
    (5400.0, False), (5402.0, True),
    (14400.0, False), (14760.0, True),
    (27000.0, False),
)


def night_in_bed(speed: float = 1.0) -> list[Step]:
    """:data:`NIGHT` played ``speed`` times faster."""
    return [(round(t / speed, 6), closed) for t, closed in NIGHT]


class ContactSim:
    """A contact on ``pin`` of a gpiozero ``MockFactory``; use as a context manager when playing a schedule.

    "Closed" is the low level on a pin pulled up and the high level on a pin
    pulled down; on a floating pin ``closed_is_high`` says which. Each change
    bounces ``bounce`` times (edges microseconds apart, as a worn contact
    does) before it settles. Open the driver on the pin before driving it.
    """

    def __init__(self, factory, pin: int, *, bounce: int = 0, closed_is_high: bool | None = None):
        self._pin = factory.pin(pin)
        self.pin = pin
        pull = self._pin.pull
        if closed_is_high is None:
            if pull == "floating":
                raise ValueError(f"GPIO{pin} floats: say whether a closed contact drives it high (closed_is_high)")
            closed_is_high = pull == "down"
        self.closed_is_high = closed_is_high
        self.bounce = bounce
        #: Every settled change as (time.monotonic(), closed), for tests to compare with what was published.
        self.history: list[Step] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        """Whether the contact is closed now."""
        return bool(self._pin.state) == self.closed_is_high

    def set(self, closed: bool) -> None:
        """Close or open the contact now, bouncing on the way."""
        for _ in range(self.bounce):
            self._drive(closed)
            self._drive(not closed)
        self._drive(closed)
        with self._changed:
            self.history.append((time.monotonic(), closed))
            self._changed.notify_all()

    def _drive(self, closed: bool) -> None:
        if closed == self.closed_is_high:
            self._pin.drive_high()
        else:
            self._pin.drive_low()

    def play(self, steps: Iterable[Step], *, every: float | None = None) -> ContactSim:
        """Play ``steps`` on a thread from now; with ``every``, again every ``every`` seconds until stopped."""
        schedule = sorted(steps)
        if not schedule:
            raise ValueError("a schedule needs at least one step")
        if every is not None and every <= schedule[-1][0]:
            raise ValueError(f"every ({every:g} s) must be longer than the schedule ({schedule[-1][0]:g} s)")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(schedule, every), daemon=True,
                                         name=f"sim-contact-{self.pin}")
        self._thread.start()
        return self

    def _run(self, schedule: list[Step], every: float | None) -> None:
        start = time.monotonic()
        while True:
            for offset, closed in schedule:
                if self._stop.wait(max(0.0, start + offset - time.monotonic())):
                    return
                self.set(closed)
            if every is None:
                return
            start += every

    def wait_for_changes(self, count: int, timeout: float) -> bool:
        """Block until ``count`` changes have been made; ``False`` if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.history) >= count, timeout)

    def stop(self) -> None:
        """Stop playing, leaving the contact as it is; safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> ContactSim:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
