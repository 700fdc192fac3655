"""Kinds judging the value itself: ``threshold`` (with hysteresis), ``state`` and ``rate``."""

from __future__ import annotations

from typing import Any

from edge.rules.detector import Detector, Signal


class Threshold(Detector):
    """Out when above ``above`` or below ``below``; back when past ``clear_below`` / ``clear_above``.

    Exactly at the limit is not out; exactly at the clear limit is back.
    """

    fields = ("side",)

    def __init__(self, rule, calendar):
        super().__init__(rule, calendar)
        p = self.params
        self.above, self.below = p.get("above"), p.get("below")
        self.clear_below = p.get("clear_below", self.above)
        self.clear_above = p.get("clear_above", self.below)
        self.side = "above" if self.above is not None else "below"

    def reading(self, ts: int, value: Any, usable: bool) -> Signal:
        out = False
        if self.above is not None and value > self.above:
            out, self.side = True, "above"
        elif self.below is not None and value < self.below:
            out, self.side = True, "below"
        back = not ((self.clear_below is not None and value > self.clear_below)
                    or (self.clear_above is not None and value < self.clear_above))
        if out:
            limit = self.above if self.side == "above" else self.below
        else:
            limit = self.clear_below if self.side == "above" else self.clear_above
        return Signal(out, back, value, limit)


def same(value: Any, wanted: bool | float) -> bool:
    """``value == wanted`` where a bool and 0/1 mean the same (a driver may report presence either way)."""
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


class State(Detector):
    """Out while the value equals ``equals``."""

    def reading(self, ts: int, value: Any, usable: bool) -> Signal:
        out = same(value, self.params["equals"])
        return Signal(out, not out, value, self.params["equals"])


class Rate(Detector):
    """Out while the change between two readings, scaled to ``per``, exceeds ``rise`` (up) or ``fall`` (down)."""

    fields = ("prev_ts", "prev_value")

    def __init__(self, rule, calendar):
        super().__init__(rule, calendar)
        self.prev_ts: int | None = None
        self.prev_value: float | None = None

    def reading(self, ts: int, value: Any, usable: bool) -> Signal | None:
        prev_ts, prev_value = self.prev_ts, self.prev_value
        self.prev_ts, self.prev_value = ts, float(value)
        if prev_ts is None or ts <= prev_ts:
            return None
        change = (float(value) - prev_value) / ((ts - prev_ts) / 1000) * self.params["per"]
        rise, fall = self.params.get("rise"), self.params.get("fall")
        if rise is not None and change > rise:
            return Signal(True, False, change, rise)
        if fall is not None and -change > fall:
            return Signal(True, False, change, -fall)
        return Signal(False, True, change, rise if rise is not None else -fall)
