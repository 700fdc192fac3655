"""``threshold``: the value above or below a limit, with hysteresis and delays."""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.i18n import _
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal
from edge.rules.kind import DELAYS, Kind, Problem
from edge.rules.text import shown


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


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q, v, lim = rule.sensor, rule.quantity, shown(value), shown(limit)
    if isinstance(value, (int, float)) and isinstance(limit, (int, float)) and value > limit:
        return f"{s}: {q} {v} is above {lim}", f"{s}：{q} 为 {v}，高于 {lim}"
    return f"{s}: {q} {v} is below {lim}", f"{s}：{q} 为 {v}，低于 {lim}"


def check(params: dict[str, Any], raw: dict[str, Any], problem: Problem, path: str) -> None:
    above, below = params.get("above"), params.get("below")
    if above is None and below is None and not any(k in raw for k in ("above", "below")):
        problem("above", _("a threshold rule needs above, below or both"))
    for key, needs in (("clear_below", "above"), ("clear_above", "below")):
        if key in raw and needs not in raw:
            problem(key, _("is only used with {other}").format(other=f"{path}.{needs}"))
    if above is not None and params.get("clear_below", above) > above:
        problem("clear_below", _("must not be above {other} ({limit:g}), got {value:g}").format(
            other=f"{path}.above", limit=above, value=params["clear_below"]))
    if below is not None and params.get("clear_above", below) < below:
        problem("clear_above", _("must not be below {other} ({limit:g}), got {value:g}").format(
            other=f"{path}.below", limit=below, value=params["clear_above"]))
    if above is not None and below is not None and below >= above:
        problem("below", _("must be below {other} ({limit:g}), got {value:g}").format(
            other=f"{path}.above", limit=above, value=below))


KIND = Kind(
    name="threshold",
    help="the value above or below a limit, with hysteresis and delays",
    options={
        "above": Option("float", help="out when the value is more than this"),
        "below": Option("float", help="out when the value is less than this; less than above when both are set"),
        "clear_below": Option("float", help="only with above, not more than it: the alarm is back once the value "
                                            "is at or below this; default: above"),
        "clear_above": Option("float", help="only with below, not less than it: the alarm is back once the value "
                                            "is at or above this; default: below"),
        **DELAYS},
    detector=Threshold,
    raised_message=raised_message,
    check=check,
)
