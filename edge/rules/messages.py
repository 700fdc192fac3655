"""The human message of a transition, in English and Chinese, both always (the payload carries both).

A raised transition says what its kind found (each kind's ``raised_message``,
:mod:`edge.rules.kinds`); acknowledged and cleared read the same for every kind.

These do not go through gettext: the gateway's own language must not decide
what the community's dashboard shows, so every transition carries both texts.

>>> from edge.rules.config import RuleConfig
>>> rule = RuleConfig("low", "pump-pressure", "pressure", "threshold", params={"below": 0.1})
>>> describe(rule, "raised", 0.08, 0.1)
('pump-pressure: pressure 0.08 is below 0.1', 'pump-pressure：pressure 为 0.08，低于 0.1')
"""

from __future__ import annotations

from typing import Any

from edge.rules.config import RuleConfig
from edge.rules.kinds import kind
from edge.rules.text import shown


def describe(rule: RuleConfig, state: str, value: Any, limit: Any, *, suppressed: bool = False,
             words: tuple[str, str] | None = None) -> tuple[str, str]:
    """``(English, Chinese)`` for a transition of ``rule`` to ``state``; the rule's own ``message`` leads.

    ``words``: what the detector said of the raise, when it said more than value and limit do.
    """
    if rule.message:
        english = chinese = rule.message
    elif state == "raised" and words is not None:
        english, chinese = words
    elif state == "raised":
        english, chinese = kind(rule.kind).raised_message(rule, value, limit)
    else:
        english, chinese = rule.alarm, rule.alarm
    if state == "cleared":
        if suppressed:
            return f"{english}: cleared, the home is set to away", f"{chinese}：已解除（住户外出）"
        if not rule.message:
            return f"{rule.alarm}: back to normal ({shown(value)})", f"{rule.alarm}：已恢复正常（{shown(value)}）"
        return f"{english}: cleared", f"{chinese}：已解除"
    if state == "acknowledged":
        return f"{english}: acknowledged", f"{chinese}：已确认"
    return english, chinese
