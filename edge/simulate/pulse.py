"""A reed-switch water meter driving a gpiozero ``MockFactory`` pin.

A thread integrates a water-use profile (litres per minute as a function of
time) and closes the simulated reed switch once per ``litres_per_pulse``
litres, with optional contact chatter. The driver under test sees real
gpiozero edges on the same factory it was given.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

Flow = Callable[[float], float]

#: A senior's morning, as (start s, duration s, litres per minute) from waking up:
#: toilet cistern refill, washing hands, filling the kettle, a shower, the dishes.
MORNING_EVENTS = (
    (0.0, 40.0, 9.0),
    (120.0, 30.0, 3.0),
    (300.0, 15.0, 6.0),
    (600.0, 360.0, 7.0),
    (1500.0, 180.0, 4.0),
)

_TICK = 0.05  # longest sleep, so a changed flow or a stop is noticed promptly
_CHATTER_GAP = 0.0005  # contact bounces come well under a millisecond apart


def morning_use(speed: float = 1.0) -> Flow:
    """Flow in L/min of :data:`MORNING_EVENTS`, played ``speed`` times faster with the same volumes.

    >>> flow = morning_use(speed=60.0)      # the whole morning in about half a minute
    >>> flow(0.5), flow(1.0), flow(10.5)    # cistern refill, then nothing, then the shower
    (540.0, 0.0, 420.0)
    """

    def flow(t: float) -> float:
        scaled = t * speed
        return speed * sum(rate for start, length, rate in MORNING_EVENTS if start <= scaled < start + length)

    return flow


class PulseMeterSim:
    """Emits meter pulses on ``pin`` of a gpiozero ``MockFactory``; use as a context manager.

    ``flow_l_per_min`` is a constant or a function of seconds since start.
    Each pulse holds the switch closed for ``pulse_seconds`` (less when
    pulses come faster) and, with ``chatter`` > 0, bounces that many times
    on closing, as worn reed contacts do. The pin's pull decides what
    "closed" is: low with a pull-up, high with a pull-down. Start it after the
    driver has opened the pin.
    """

    def __init__(
        self,
        factory,
        pin: int,
        litres_per_pulse: float,
        flow_l_per_min: Flow | float = 6.0,
        *,
        pulse_seconds: float = 0.05,
        chatter: int = 0,
    ):
        self._pin = factory.pin(pin)
        self.litres_per_pulse = litres_per_pulse
        self._flow = flow_l_per_min if callable(flow_l_per_min) else (lambda _t, rate=float(flow_l_per_min): rate)
        self.pulse_seconds = pulse_seconds
        self.chatter = chatter
        self._pulses = 0
        self._emitted = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sim-pulse-meter-{pin}", daemon=True)

    @property
    def pulses(self) -> int:
        """Pulses emitted so far."""
        with self._emitted:
            return self._pulses

    @property
    def litres(self) -> float:
        """Water that has flowed through the simulated meter in whole pulses."""
        return self.pulses * self.litres_per_pulse

    def wait_for_pulses(self, count: int, timeout: float) -> bool:
        """Block until ``count`` pulses were emitted; ``False`` if ``timeout`` passed first."""
        with self._emitted:
            return self._emitted.wait_for(lambda: self._pulses >= count, timeout)

    def start(self) -> PulseMeterSim:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current pulse, leaving the switch open. Safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> PulseMeterSim:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _switch(self, closed: bool) -> None:
        # With a pull-up the reed switch pulls the pin to ground when it closes.
        if closed == (self._pin.pull == "up"):
            self._pin.drive_low()
        else:
            self._pin.drive_high()

    def _run(self) -> None:
        t0 = last = time.monotonic()
        litres = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            rate = max(0.0, self._flow(now - t0)) / 60.0  # litres per second
            litres += rate * (now - last)
            last = now
            if litres >= self.litres_per_pulse:
                litres -= self.litres_per_pulse
                self._emit(period=self.litres_per_pulse / rate if rate else self.pulse_seconds * 2)
                continue
            until_next = (self.litres_per_pulse - litres) / rate if rate else _TICK
            self._stop.wait(min(until_next, _TICK))

    def _emit(self, period: float) -> None:
        # Closed, then open, each for the same time: even after a stall the switch
        # never re-closes the instant it opened, which no real meter can do.
        hold = min(self.pulse_seconds, period / 2)
        self._switch(closed=True)
        for _ in range(self.chatter):
            time.sleep(_CHATTER_GAP)
            self._switch(closed=False)
            time.sleep(_CHATTER_GAP)
            self._switch(closed=True)
        with self._emitted:
            self._pulses += 1
            self._emitted.notify_all()
        self._stop.wait(hold)
        self._switch(closed=False)
        self._stop.wait(hold)
