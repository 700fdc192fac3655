"""``stale``: a sensor that stopped giving good readings."""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal, seconds_ms
from edge.rules.kind import WEEK, Kind
from edge.rules.text import duration


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


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q = rule.sensor, rule.quantity
    after = duration(rule.params["after"])
    return f"{s}: no good {q} reading for {after}", f"{s}：{after} 内没有有效的 {q} 读数"


KIND = Kind(
    name="stale",
    help="a sensor that stopped giving good readings",
    options={
        "after": Option("duration", required=True, min=1, max=WEEK,
                        help="raise when no usable reading came for this long")},
    detector=Stale,
    raised_message=raised_message,
)
