"""``rate``: the value changing too fast."""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.i18n import _
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal
from edge.rules.kind import WEEK, Kind, Problem, positive
from edge.rules.text import duration, shown


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


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q, v, lim = rule.sensor, rule.quantity, shown(value), shown(limit)
    per = duration(rule.params["per"])
    return (f"{s}: {q} changes by {v} per {per}, faster than {lim}",
            f"{s}：{q} 每 {per} 变化 {v}，超过 {lim}")


def check(params: dict[str, Any], raw: dict[str, Any], problem: Problem, path: str) -> None:
    if not any(k in raw for k in ("rise", "fall")):
        problem("rise", _("a rate rule needs rise, fall or both"))


KIND = Kind(
    name="rate",
    help="the value changing too fast",
    options={
        "rise": Option("float", check=positive, help="more than 0: out when the value rises faster than this per per"),
        "fall": Option("float", check=positive, help="more than 0: out when the value falls faster than this per per"),
        "per": Option("duration", required=True, min=0.001, max=WEEK,
                      help='the time rise and fall are given for ("1m": units per minute)')},
    detector=Rate,
    raised_message=raised_message,
    check=check,
)
