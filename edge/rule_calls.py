"""Acting on the rules engine from other threads: away mode, acknowledging, the acknowledge button.

The engine belongs to the core thread (docs/design.md, Threads). A command or a
button press never touches it: it puts a call on the core's inbox, and the core
runs it and adds the transitions it returns, exactly as for a reading — so an
acknowledgement is stored and published like any other alarm transition.
"""

from __future__ import annotations

import datetime
import logging
import queue
import zoneinfo
from typing import Any, Callable

from edge.commands import CommandError
from edge.rules import RuleError

log = logging.getLogger("linli.agent")

#: Seconds a command waits for the core to run its call.
CORE_ANSWER_WAIT = 5.0


def on_core(core, fn: Callable[[Any], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run ``fn(rules)`` on the core thread (the engine's owner) and return its transitions."""
    if core is None or core.rules is None:
        raise CommandError("this gateway has no rules configured")
    box: queue.Queue = queue.Queue(maxsize=1)
    core.inbox.put(("call", fn, box))
    try:
        ok, value = box.get(timeout=CORE_ANSWER_WAIT)
    except queue.Empty:
        raise CommandError(f"the agent's core did not answer within {CORE_ANSWER_WAIT:g} s") from None
    if not ok:
        raise CommandError(str(value))
    return value


def away(core, now_ms: int, timezone: str, args: dict[str, Any]) -> dict[str, Any]:
    """``{"until": "2026-12-01T18:00+08:00"}`` starts away mode, ``{"until": null}`` ends it."""
    until = args.get("until")
    until_ms = None if until is None else parse_until(until, timezone)
    if until_ms is not None and until_ms <= now_ms:
        raise CommandError(f"until {until} is not in the future")
    transitions = on_core(core, lambda rules: rules.set_away(until_ms, now_ms))
    return {"away": until_ms is not None, "until": until_ms, "transitions": len(transitions)}


def alarm_ack(core, now_ms: int, args: dict[str, Any]) -> dict[str, Any]:
    """``{"alarm": "pump-pressure/low"}`` acknowledges that alarm (silences a latched one)."""
    alarm = args.get("alarm")
    if not isinstance(alarm, str):
        raise CommandError('args.alarm must be a "<sensor>/<rule>" string')
    transitions = on_core(core, lambda rules: rules.acknowledge(alarm, now_ms))
    return {"alarm": alarm, "states": [t["state"] for t in transitions]}


def explain(core, now_ms: int, args: dict[str, Any]) -> dict[str, Any]:
    """``{"alarm": "flat-302-water/routine"}``: what that learning rule has learned (``linli explain``)."""
    alarm = args.get("alarm")
    if not isinstance(alarm, str):
        raise CommandError('args.alarm must be a "<sensor>/<rule>" string')
    found: dict[str, Any] = {}

    def look(rules) -> list[dict[str, Any]]:
        found["explained"] = rules.explain(alarm, now_ms)
        return []

    on_core(core, look)
    return found["explained"]


def button_pressed(core, output, now_ms: int) -> None:
    """An output's acknowledge button, on gpiozero's thread: only enqueue; the core acknowledges.

    It acknowledges what the output sounded for at the press, exactly as ``linli alarm ack``
    would, so the acknowledgement is published and kept like any other.
    """
    if core is None or core.rules is None:
        log.warning("acknowledge button of %r pressed, but no rules run", output)
        return
    # What sounds now, when the person pressed — not what may sound by the time the core gets to it.
    alarms = output.sounding()

    def acknowledge(rules) -> list[dict[str, Any]]:
        log.info("acknowledge button of %r pressed: acknowledging %s", output, ", ".join(alarms) or "nothing")
        found: list[dict[str, Any]] = []
        for alarm in alarms:
            try:
                found += rules.acknowledge(alarm, now_ms)
            except RuleError as exc:  # gateway/away, say: nothing a button can acknowledge
                log.warning("acknowledge button of %r: %s", output, exc)
        return found

    try:
        core.inbox.put_nowait(("call", acknowledge, LogFailure(f"acknowledge button of {output!r}")))
    except queue.Full:
        log.error("acknowledge button of %r pressed, but the core's inbox is full; press it again", output)


class LogFailure:
    """The reply box of a core call nobody waits for (a button press): a failure is logged, not handed back."""

    def __init__(self, what: str):
        self.what = what

    def put(self, result: tuple[bool, Any]) -> None:
        ok, value = result
        if not ok:
            log.error("%s failed: %s", self.what, value)


def parse_until(text: Any, timezone: str) -> int:
    """An ISO 8601 time (local to the gateway when it has no offset) as epoch ms.

    >>> parse_until("2026-12-01T18:00", "Asia/Shanghai")
    1796119200000
    """
    if not isinstance(text, str):
        raise CommandError(f"until must be an ISO 8601 time like 2026-12-01T18:00, got {text!r}")
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"until must be an ISO 8601 time like 2026-12-01T18:00, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return int(moment.timestamp() * 1000)
