"""``daily_total``: more than a day's worth (a burst pipe, a hose left running).

A counter going down is a reset or a replaced meter, never negative use: the
drop counts as no use and the new value becomes the base to measure from.
"""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal, more_than
from edge.rules.kind import Kind
from edge.rules.text import shown


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


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q, v, lim = rule.sensor, rule.quantity, shown(value), shown(limit)
    return f"{s}: {q} rose by {v} today, more than {lim}", f"{s}：今日 {q} 增加 {v}，超过 {lim}"


KIND = Kind(
    name="daily_total",
    help="more than a day's worth (a burst pipe, a hose left running)",
    options={
        "above": Option("float", required=True, min=0,
                        help="raise when the total rose by more than this within one local calendar day")},
    detector=DailyTotal,
    raised_message=raised_message,
)
