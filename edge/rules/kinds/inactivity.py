"""``inactivity``: a running total that stopped rising (no water used).

A counter going down is a reset or a replaced meter, never negative use: the
drop counts as no use and the new value becomes the base to measure from.
"""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal, at_least, seconds_ms
from edge.rules.kind import WEEK, Kind, Sensitivity, positive
from edge.rules.text import duration, shown


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


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q, lim = rule.sensor, rule.quantity, shown(limit)
    window = duration(rule.params["window"])
    return (f"{s}: {q} rose by less than {lim} in {window}",
            f"{s}：{window} 内 {q} 增加不足 {lim}")


KIND = Kind(
    name="inactivity",
    help="a running total that stopped rising (no water used)",
    options={
        "min_increase": Option("float", required=True, check=positive,
                               help="more than 0: a smaller rise of the total is no use (0.01 m³ is 10 L)"),
        "window": Option("duration", required=True, min=1, max=WEEK,
                         help="raise after this long without that rise")},
    detector=Inactivity,
    raised_message=raised_message,
    # How long a quiet home may stay quiet: shorter finds a fall sooner, longer wakes fewer people for a nap.
    sensitivity=Sensitivity("window", ("6h", "8h", "12h", "16h", "24h")),
)
