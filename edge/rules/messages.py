"""The human message of a transition, in English and Chinese, both always (the payload carries both).

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


def duration(seconds: float) -> str:
    """``43200`` → ``"12h"``, ``5400`` → ``"1h30m"``, ``10`` → ``"10s"``.

    >>> duration(5400), duration(0.5)
    ('1h30m', '0.5s')
    """
    if seconds < 1:
        return f"{seconds:g}s"
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _raised(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    s, q, p = rule.sensor, rule.quantity, rule.params
    v, lim = shown(value), shown(limit)
    kind = rule.kind
    if kind == "threshold":
        if isinstance(value, (int, float)) and isinstance(limit, (int, float)) and value > limit:
            return f"{s}: {q} {v} is above {lim}", f"{s}：{q} 为 {v}，高于 {lim}"
        return f"{s}: {q} {v} is below {lim}", f"{s}：{q} 为 {v}，低于 {lim}"
    if kind == "state":
        return f"{s}: {q} is {v}", f"{s}：{q} 为 {v}"
    if kind == "rate":
        per = duration(p["per"])
        return (f"{s}: {q} changes by {v} per {per}, faster than {lim}",
                f"{s}：{q} 每 {per} 变化 {v}，超过 {lim}")
    if kind == "inactivity":
        window = duration(p["window"])
        return (f"{s}: {q} rose by less than {lim} in {window}",
                f"{s}：{window} 内 {q} 增加不足 {lim}")
    if kind == "continuous_use":
        window, size = duration(p["window"]), duration(p["bin"])
        return (f"{s}: {q} rose in every {size} for {window} (tap open or leak?)",
                f"{s}：{window} 内每 {size} 都有用量（水龙头未关或漏水？）")
    if kind == "daily_total":
        return f"{s}: {q} rose by {v} today, more than {lim}", f"{s}：今日 {q} 增加 {v}，超过 {lim}"
    if kind == "count":
        window = duration(p["window"])
        edges = "starts" if p.get("edges", "rising") == "rising" else "stops"
        return (f"{s}: {v} {q} {edges} within {window}, more than {lim}",
                f"{s}：{window} 内 {q} {'启动' if edges == 'starts' else '停止'} {v} 次，超过 {lim} 次")
    after = duration(p["after"])
    return f"{s}: no good {q} reading for {after}", f"{s}：{after} 内没有有效的 {q} 读数"


def describe(rule: RuleConfig, state: str, value: Any, limit: Any, *, suppressed: bool = False) -> tuple[str, str]:
    """``(English, Chinese)`` for a transition of ``rule`` to ``state``; the rule's own ``message`` leads."""
    if rule.message:
        english = chinese = rule.message
    else:
        english, chinese = _raised(rule, value, limit) if state == "raised" else (rule.alarm, rule.alarm)
    if state == "cleared":
        if suppressed:
            return f"{english}: cleared, the home is set to away", f"{chinese}：已解除（住户外出）"
        if not rule.message:
            return f"{rule.alarm}: back to normal ({shown(value)})", f"{rule.alarm}：已恢复正常（{shown(value)}）"
        return f"{english}: cleared", f"{chinese}：已解除"
    if state == "acknowledged":
        return f"{english}: acknowledged", f"{chinese}：已确认"
    return english, chinese
