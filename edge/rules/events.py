"""Kinds about when things happen: ``count`` (edges in a sliding window) and ``stale`` (silence)."""

from __future__ import annotations

from typing import Any

from edge.rules.detector import Detector, Signal, seconds_ms
from edge.rules.levels import same


class Count(Detector):
    """Out while more than ``above`` ``edges`` (rising or falling) happened within the last ``window``.

    An edge at ``t`` counts until ``t + window`` (exclusive), so the alarm clears
    exactly when the oldest edge leaves the window. The first reading is no edge.
    """

    fields = ("level", "edges")

    def __init__(self, rule, calendar):
        super().__init__(rule, calendar)
        self.window = seconds_ms(self.params["window"])
        self.rising = self.params.get("edges", "rising") == "rising"
        self.limit = self.params["above"]
        self.level: bool | None = None
        self.edges: list[int] = []

    def _signal(self) -> Signal:
        out = len(self.edges) > self.limit
        return Signal(out, not out, len(self.edges), self.limit)

    def _forget(self, now: int) -> None:
        while self.edges and self.edges[0] <= now - self.window:
            self.edges.pop(0)

    def reading(self, ts: int, value: Any, usable: bool) -> Signal:
        level = not same(value, 0)
        self._forget(ts)
        if self.level is not None and level != self.level and level == self.rising:
            self.edges.append(ts)
        self.level = level
        return self._signal()

    def due(self) -> int | None:
        return self.edges[0] + self.window if self.edges else None

    def fire(self, now: int) -> Signal:
        self._forget(now)
        return self._signal()


class Stale(Detector):
    """Out when no usable reading came for ``after``; back at the next one. Counts from start-up too."""

    fields = ("last_good", "out")
    hears_bad = True

    def __init__(self, rule, calendar):
        super().__init__(rule, calendar)
        self.after = seconds_ms(self.params["after"])
        self.last_good: int | None = None
        self.out = False

    def start(self, now: int) -> None:
        # A sensor that never says a word must go stale too: count from the first moment the engine knows.
        if self.last_good is None:
            self.last_good = now

    def reading(self, ts: int, value: Any, usable: bool) -> Signal | None:
        if not usable:
            return None
        self.last_good, self.out = ts, False
        return Signal(False, True, value, self.params["after"])

    def due(self) -> int | None:
        return None if self.out or self.last_good is None else self.last_good + self.after

    def fire(self, now: int) -> Signal:
        self.out = True
        return Signal(True, False, None, self.params["after"])
