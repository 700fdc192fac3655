"""``state``: the value equal to something (a bed pad's ``presence``, a pump contact, a pump's mode)."""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal, same
from edge.rules.kind import DELAYS, Kind
from edge.rules.text import shown


class State(Detector):
    """Out while the value equals ``equals``."""

    def reading(self, ts: int, value: Any, usable: bool) -> Signal:
        out = same(value, self.params["equals"])
        return Signal(out, not out, value, self.params["equals"])


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q, v = rule.sensor, rule.quantity, shown(value)
    return f"{s}: {q} is {v}", f"{s}：{q} 为 {v}"


OPTIONS = {
    "equals": Option("bool", required=True,
                     help="out while the value equals this; true and 1, false and 0 are the same; or a number, "
                          "for a level such as a pump's mode"),
    **DELAYS,
}


def options_for(raw: dict[str, Any]) -> dict[str, Option]:
    """``equals`` is documented (and refused) as true or false, but a number is a level such as a pump's mode."""
    equals = raw.get("equals")
    if isinstance(equals, (int, float)) and not isinstance(equals, bool):
        return {**OPTIONS, "equals": Option("float", required=True)}
    return OPTIONS


KIND = Kind(
    name="state",
    help="the value equal to something (a bed pad's `presence`, a pump contact)",
    options=OPTIONS,
    detector=State,
    raised_message=raised_message,
    options_for=options_for,
)
