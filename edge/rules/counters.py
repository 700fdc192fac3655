"""Kinds watching a cumulative counter (a meter's ``volume``): ``inactivity``, ``continuous_use``, ``daily_total``.

A counter going down is a reset or a replaced meter, never negative use: the
drop counts as no use and the new value becomes the base to measure from.
"""

from __future__ import annotations

from typing import Any

from edge.rules.detector import Detector, Signal, at_least, more_than, seconds_ms


class Inactivity(Detector):
    """Out once the counter has not risen by ``min_increase`` for ``window``; back at the reading where it has."""

    fields = ("ref_ts", "ref_value", "last", "out")

    def __init__(self, rule, calendar):
        super().__init__(rule, calendar)
        self.window = seconds_ms(self.params["window"])
        self.limit = self.params["min_increase"]
        self.ref_ts: int | None = None        # when the counter last rose by min_increase
        self.ref_value: float | None = None   # ... and its value then (shifted down across resets)
        self.last: float | None = None
        self.out = False

    def reading(self, ts: int, value: Any, usable: bool) -> Signal:
        value = float(value)
        if self.ref_ts is None:
            self.ref_ts, self.ref_value, self.last = ts, value, value
            return Signal(False, True, 0.0, self.limit)
        if value < self.last:
            # keep what had risen before the reset, count the drop itself as nothing
            self.ref_value = value - (self.last - self.ref_value)
        self.last = value
        rose = value - self.ref_value
        if at_least(rose, self.limit, value):
            self.ref_ts, self.ref_value, self.out = ts, value, False
            return Signal(False, True, rose, self.limit)
        return Signal(self.out, not self.out, rose, self.limit)

    def due(self) -> int | None:
        return None if self.out or self.ref_ts is None else self.ref_ts + self.window

    def fire(self, now: int) -> Signal:
        self.out = True
        return Signal(True, False, self.last - self.ref_value, self.limit)

    def resume(self, now: int) -> Signal | None:
        # Back home after being away: the quiet time counts from the return, not from the departure.
        if self.ref_ts is None:
            return None
        self.ref_ts, self.ref_value, self.out = max(self.ref_ts, now), self.last, False
        return Signal(False, True, 0.0, self.limit)


class ContinuousUse(Detector):
    """Out when the counter rose by ``min_increase`` in every ``bin`` for ``window``; back when a bin ends dry.

    Bins are aligned to local time (a 30-minute bin starts at :00 or :30). A
    reading's increase counts in the bin holding the reading, so readings must
    come at least once per bin; a bin without a reading is dry.
    """

    fields = ("last", "bin", "bin_increase", "run_start", "out")

    def __init__(self, rule, calendar):
        super().__init__(rule, calendar)
        self.bin_ms = seconds_ms(self.params["bin"])
        self.needed = round(self.params["window"] / self.params["bin"])
        self.limit = self.params["min_increase"]
        self.last: float | None = None
        self.bin: int | None = None           # index of the current bin (local time // bin)
        self.bin_increase = 0.0
        self.run_start: int | None = None     # first bin of the current run of wet bins
        self.out = False

    def _bin_of(self, ts: int) -> int:
        return (ts + self.calendar.offset_ms(ts)) // self.bin_ms

    def _bin_end(self, index: int, ts: int) -> int:
        return (index + 1) * self.bin_ms - self.calendar.offset_ms(ts)

    def reading(self, ts: int, value: Any, usable: bool) -> Signal | None:
        value = float(value)
        index = self._bin_of(ts)
        if self.last is None:
            self.last, self.bin = value, index
            return None
        increase = max(0.0, value - self.last)
        self.last = value
        if index != self.bin:
            ended_wet = at_least(self.bin_increase, self.limit, value)
            if not ended_wet or index != self.bin + 1:     # a dry bin, or bins without any reading
                self.run_start = None
            self.bin, self.bin_increase = index, 0.0
        self.bin_increase += increase
        if at_least(self.bin_increase, self.limit, value):
            if self.run_start is None:
                self.run_start = index
            if index - self.run_start + 1 >= self.needed:
                self.out = True
        wet = 0 if self.run_start is None else index - self.run_start + (
            1 if at_least(self.bin_increase, self.limit, value) else 0)
        return Signal(self.out, not self.out, wet, self.needed) if self.out else Signal(False, True, wet, self.needed)

    def due(self) -> int | None:
        if not self.out or at_least(self.bin_increase, self.limit, self.last or 0.0):
            return None
        return self._bin_end(self.bin, self.bin * self.bin_ms)

    def fire(self, now: int) -> Signal:
        dry_increase = self.bin_increase
        self.out, self.run_start = False, None
        self.bin, self.bin_increase = self.bin + 1, 0.0
        return Signal(False, True, dry_increase, self.limit)


class DailyTotal(Detector):
    """Out when the counter rose by more than ``above`` within the local calendar day; back at local midnight."""

    fields = ("last", "total", "day_end", "out")

    def __init__(self, rule, calendar):
        super().__init__(rule, calendar)
        self.limit = self.params["above"]
        self.last: float | None = None
        self.total = 0.0
        self.day_end: int | None = None
        self.out = False

    def reading(self, ts: int, value: Any, usable: bool) -> Signal:
        value = float(value)
        if self.day_end is None or ts >= self.day_end:
            self.day_end, self.total, self.out = self.calendar.day_end(ts), 0.0, False
        if self.last is not None:
            self.total += max(0.0, value - self.last)
        self.last = value
        if more_than(self.total, self.limit, value):
            self.out = True
        return Signal(self.out, not self.out, self.total, self.limit)

    def due(self) -> int | None:
        return self.day_end if self.out else None

    def fire(self, now: int) -> Signal:
        total = self.total
        self.day_end, self.total, self.out = self.calendar.day_end(now), 0.0, False
        return Signal(False, True, total, self.limit)
