"""``count``: something starting too often (a jockey pump, a short-cycling compressor)."""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal, same, seconds_ms
from edge.rules.kind import WEEK, Kind
from edge.rules.text import duration, shown


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


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q, v, lim = rule.sensor, rule.quantity, shown(value), shown(limit)
    window = duration(rule.params["window"])
    edges = "starts" if rule.params.get("edges", "rising") == "rising" else "stops"
    return (f"{s}: {v} {q} {edges} within {window}, more than {lim}",
            f"{s}：{window} 内 {q} {'启动' if edges == 'starts' else '停止'} {v} 次，超过 {lim} 次")


KIND = Kind(
    name="count",
    help="something starting too often (a jockey pump, a short-cycling compressor)",
    options={
        "edges": Option("str", default="rising", choices=("rising", "falling"),
                        help="rising counts starts (off to on), falling counts stops (on to off)"),
        # The limit goes into every alarm payload: bounded far above a real count (an edge every 6 s for a
        # week) and far below any consumer's integer range, where a TOML integer of 300 digits was not.
        "above": Option("int", required=True, min=0, max=100_000,
                        help="out while more than this many edges fall in window"),
        "window": Option("duration", required=True, min=1, max=WEEK, help="the sliding window edges count in")},
    detector=Count,
    raised_message=raised_message,
)
