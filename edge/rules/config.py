"""What one ``[[rule]]`` table becomes once validated: a :class:`RuleConfig`.

Validation lives with the rest of the config (``edge/config_rules.py``, with each
kind's own keys declared in :mod:`edge.rules.kinds`); this module only holds the
shape both sides agree on, so the engine never imports the config loader.

>>> rule = RuleConfig("low", "pump-pressure", "pressure", "threshold", params={"below": 0.1})
>>> rule.alarm
'pump-pressure/low'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class RuleConfig:
    """One rule: common keys plus ``params``, the kind's own keys (durations in seconds, numbers as float).

    ``active`` is a daily local-time window as ``(start_minute, end_minute)`` of the
    day; ``end < start`` crosses midnight.
    """

    id: str
    sensor: str
    quantity: str
    kind: str
    severity: str = "warning"
    message: str | None = None
    active: tuple[int, int] | None = None
    latch: bool = False
    suppress_when_away: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def alarm(self) -> str:
        """The alarm's name, ``<sensor>/<rule id>`` (its MQTT topic under ``alarm/``)."""
        return f"{self.sensor}/{self.id}"

    def fingerprint(self) -> str:
        """What the saved detector state depends on: a changed rule starts its detector afresh."""
        params = ",".join(f"{key}={self.params[key]!r}" for key in sorted(self.params))
        return f"{self.kind}|{self.quantity}|{params}"
