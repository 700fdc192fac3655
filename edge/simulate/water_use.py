"""A senior's day of water use, for simulated meters whose volume grows with use.

:func:`household_use` gives litres per minute as a function of seconds since
start: a night with nothing but an occasional toilet flush, a morning peak
(cistern, washing, kettle, shower), small draws through the day, cooking and
washing up in the evening. The day is built from a seeded random generator,
so the same seed plays the same day; ``speed`` plays it faster with the same
volumes, which is what a demo or a test needs.

:class:`VolumeCounter` integrates such a flow into a meter reading.

>>> flow = household_use(seed=1)
>>> round(sum(flow(t) for t in range(0, 86400, 1)) / 60)   # litres in the whole day
109
>>> flow(3 * 3600.0)                                       # three in the morning: nobody is up
0.0
>>> counter = VolumeCounter(10.0, lambda t: 6.0, clock=iter([0.0, 60.0]).__next__)
>>> counter.m3()                                           # 6 L/min for a minute on top of 10 m³
10.006
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable

Flow = Callable[[float], float]

DAY = 86400.0

#: (earliest start h, latest start h, shortest s, longest s, L/min, how many) of a senior's day.
_DRAWS = (
    (6.0, 7.0, 30.0, 60.0, 9.0, 1),      # first flush after waking
    (6.5, 8.0, 20.0, 60.0, 3.0, 3),      # washing hands and face
    (7.0, 8.5, 240.0, 420.0, 7.0, 1),    # shower
    (7.0, 9.0, 10.0, 20.0, 6.0, 1),      # kettle
    (9.0, 17.0, 30.0, 60.0, 9.0, 4),     # flushes through the day
    (9.0, 17.0, 10.0, 40.0, 3.0, 5),     # small draws
    (17.0, 19.0, 60.0, 240.0, 4.0, 2),   # cooking, washing up
    (19.0, 22.0, 30.0, 60.0, 9.0, 2),    # evening flushes
    (0.5, 5.0, 30.0, 60.0, 9.0, 1),      # one night-time flush
)


def household_use(speed: float = 1.0, seed: int = 0, start_hour: float = 0.0) -> Flow:
    """Flow in L/min at ``t`` seconds since start; one repeatable day per ``seed``, repeating daily.

    The day starts at midnight, or at ``start_hour`` (6.5: half past six, just before the morning peak).
    """
    rng = random.Random(seed)
    events: list[tuple[float, float, float]] = []
    for earliest, latest, shortest, longest, rate, count in _DRAWS:
        for _ in range(count):
            start = rng.uniform(earliest, latest) * 3600.0
            events.append((start, rng.uniform(shortest, longest), rate))
    events.sort()

    def flow(t: float) -> float:
        moment = (start_hour * 3600.0 + t * speed) % DAY
        return speed * sum(rate for start, length, rate in events if start <= moment < start + length)

    return flow


class VolumeCounter:
    """A meter register: ``start_m3`` plus the integral of ``flow`` (L/min, or a constant) since creation.

    Thread-safe: the simulator's line thread reads it while a test may change the flow.
    ``clock`` (monotonic seconds) is injectable for tests.
    """

    _STEP = 0.05  # integration step in seconds: short enough for a 10 s draw played 100 times faster

    def __init__(self, start_m3: float, flow: Flow | float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._litres = start_m3 * 1000.0
        self._t0 = self._last = clock()
        self.set_flow(flow)

    def set_flow(self, flow: Flow | float) -> None:
        """Change the use profile from now on (a constant means a steady draw, e.g. a leak)."""
        with self._lock:
            self._flow = flow if callable(flow) else (lambda _t, rate=float(flow): rate)

    def m3(self) -> float:
        """The register now, in m³ (rounded to the litre, as a meter counts)."""
        with self._lock:
            now = self._clock()
            t = self._last - self._t0
            end = now - self._t0
            while t < end:
                step = min(self._STEP, end - t)
                self._litres += self._flow(t) * step / 60.0
                t += step
            self._last = now
            return round(self._litres) / 1000.0
