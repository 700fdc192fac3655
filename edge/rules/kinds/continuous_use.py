"""``continuous_use``: a running total that rose in every bin for a long time (a tap left open, a leak).

A counter going down is a reset or a replaced meter, never negative use: the
drop counts as no use and the new value becomes the base to measure from.
"""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.config_problems import show
from edge.i18n import _
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal, at_least, seconds_ms
from edge.rules.kind import WEEK, Kind, Problem, positive
from edge.rules.text import duration


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


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q = rule.sensor, rule.quantity
    window, size = duration(rule.params["window"]), duration(rule.params["bin"])
    return (f"{s}: {q} rose in every {size} for {window} (tap open or leak?)",
            f"{s}：{window} 内每 {size} 都有用量（水龙头未关或漏水？）")


def check(params: dict[str, Any], raw: dict[str, Any], problem: Problem, path: str) -> None:
    if "bin" in params and "window" in params:
        bins = params["window"] / params["bin"]
        if bins < 1 or abs(bins - round(bins)) > 1e-9:
            problem("window", _("must be a whole number of bins ({bin}), got {value}").format(
                bin=show(raw["bin"]), value=show(raw["window"])))


KIND = Kind(
    name="continuous_use",
    help="a running total that rose in every bin for a long time (a tap left open, a leak)",
    options={
        "bin": Option("duration", required=True, min=1, max=86400,
                      help="length of one bin, on the gateway's local clock; divide an hour or a day by it"),
        "window": Option("duration", required=True, min=1, max=WEEK,
                         help="a whole number of bins: raise when every bin in a row this long was wet"),
        "min_increase": Option("float", required=True, check=positive,
                               help="more than 0: the rise of the total within one bin that makes it wet")},
    detector=ContinuousUse,
    raised_message=raised_message,
    check=check,
)
