"""What ``linli watch`` shows: the latest reading of every sensor and quantity, and a few minutes of its past.

The core offers every reading it stored (:meth:`LiveValues.offer`, a reading sink run on the
core thread); the control socket's clients read :meth:`LiveValues.snapshot` on their own
threads. The lock here guards these few dicts only: it is never held while anything else is
called, so neither side can wait on the other for longer than a copy of a few hundred numbers.

Memory stays tiny and bounded: at most :data:`MAX_SERIES` series of :data:`POINTS` points each.
A point covers at least :data:`SPACING_MS` of time (a newer reading within that replaces the last
point), so a radar reporting four times a second and a meter read every minute both keep
minutes of history, not seconds.

>>> live = LiveValues()
>>> live.offer({"kind": "reading", "sensor": "s", "quantity": "q", "value": 1.5, "unit": "MPa",
...             "quality": "good", "ts": 1000})
>>> [(row["sensor"], row["value"], row["history"]) for row in live.snapshot()]
[('s', 1.5, [1.5])]
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

#: Points of history kept per sensor and quantity (one sparkline's width).
POINTS = 60
#: Least time one point stands for: 60 points of at least 5 s are at least five minutes.
SPACING_MS = 5_000
#: Series kept at most (a gateway has tens); a driver reporting ever new quantities cannot grow the agent.
MAX_SERIES = 256


class _Series:
    __slots__ = ("latest", "seen", "point_ts", "history")

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}
        self.seen = 0.0                     # time.monotonic() of the latest reading: ages survive clock steps
        self.point_ts: int | None = None    # the reading ts the newest point began with
        self.history: deque[float | None] = deque(maxlen=POINTS)


class LiveValues:
    """The latest reading and a short history per (sensor, quantity); written by the core, read by anyone."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()

    def offer(self, record: dict[str, Any]) -> None:
        """A reading sink: keep ``record`` as the latest of its series and add it to the history."""
        key = (str(record.get("sensor")), str(record.get("quantity")))
        ts = record.get("ts") if isinstance(record.get("ts"), int) else 0
        point = _plotted(record.get("value"))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= MAX_SERIES:
                    return
                series = self._series[key] = _Series()
            series.latest = {name: record.get(name) for name in ("value", "unit", "quality", "ts")}
            series.seen = time.monotonic()
            if series.point_ts is not None and ts - series.point_ts < SPACING_MS:
                series.history[-1] = point
            else:
                series.point_ts = ts
                series.history.append(point)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every series as ``{"sensor", "quantity", "value", "unit", "quality", "ts", "age_s", "history"}``."""
        now = time.monotonic()
        with self._lock:
            copied = [(key, dict(series.latest), series.seen, list(series.history))
                      for key, series in self._series.items()]
        return [{"sensor": sensor, "quantity": quantity, **latest, "age_s": round(now - seen, 1), "history": history}
                for (sensor, quantity), latest, seen, history in sorted(copied, key=lambda item: item[0])]


def _plotted(value: Any) -> float | None:
    """A value as a sparkline plots it: numbers as they are, true/false as 1/0, anything else a gap."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return value
    return None
