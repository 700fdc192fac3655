"""``linli alarm test``: a clearly marked test alarm through the whole path, cleared again shortly after.

The alarm ``gateway/test`` (severity ``info``, rule ``test``, a message saying it is a test) is
raised on the core thread exactly like a rule's transition: stored in the outbox at alarm
priority, published on ``alarm`` and ``alarm/gateway/test``, offered to the local outputs. A
timer clears it after the seconds asked for; a drill asked again while one runs only moves its
end. Stopping the agent clears a drill still running, so the central side never keeps a test
alarm raised.

Threads: the command's handler (a control-socket or uplink thread) and the timer only put calls
on the core's inbox; :attr:`AlarmDrill.raised` is changed by those calls, on the core thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from edge.commands import CommandError

log = logging.getLogger("linli.agent")

TEST_ALARM = "gateway/test"
#: How long a drill keeps its alarm raised unless asked otherwise, and the longest it may.
DEFAULT_SECONDS, MAX_SECONDS = 10.0, 600.0
#: Seconds a command waits for the core to run its call.
CORE_ANSWER_WAIT = 5.0

_MESSAGES = {
    "raised": ("test alarm raised with linli alarm test; no action needed",
               "测试告警（linli alarm test 发出），无需处理"),
    "cleared": ("test alarm cleared: the test is over", "测试告警已解除：测试结束"),
}


def transition(state: str, ts: int) -> dict[str, Any]:
    """The test alarm's ``raised`` or ``cleared`` transition at ``ts`` (epoch ms).

    >>> transition("raised", 5)["rule"]
    'test'
    """
    english, chinese = _MESSAGES[state]
    return {"kind": "alarm", "alarm": TEST_ALARM, "state": state, "severity": "info", "value": None,
            "limit": None, "ts": ts, "rule": "test", "message": english, "message_zh": chinese}


class AlarmDrill:
    """The test alarm of one agent. ``core()`` is the agent's core of the moment (a reload replaces it)."""

    def __init__(self, core: Callable[[], Any], now_ms: Callable[[], int]):
        self._core = core
        self._now_ms = now_ms
        self.raised = False                         # changed on the core thread only
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()        # guards _timer; nothing is called while it is held

    def start(self, args: dict[str, Any]) -> dict[str, Any]:
        """The ``alarm_test`` command: raise the test alarm now, clear it after ``args["seconds"]``."""
        seconds = args.get("seconds", DEFAULT_SECONDS)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SECONDS:
            raise CommandError(f"args.seconds must be a number of seconds above 0 and at most {MAX_SECONDS:g}")
        transitions = self._on_core(self._raise)
        timer = threading.Timer(seconds, self.finish)
        timer.daemon = True
        with self._timer_lock:
            previous, self._timer = self._timer, timer
        if previous is not None:
            previous.cancel()
        timer.start()
        return {"alarm": TEST_ALARM, "raised": bool(transitions), "clears_in_s": seconds}

    def finish(self) -> None:
        """Clear the test alarm if it is raised (the timer's call, and the agent's before it stops)."""
        with self._timer_lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if timer is None and not self.raised:
            return                                   # no drill under way: the core is not asked
        try:
            self._on_core(self._clear)
        except CommandError as exc:
            log.error("the test alarm could not be cleared: %s", exc)

    def _raise(self, _rules) -> list[dict[str, Any]]:
        if self.raised:
            return []
        self.raised = True
        return [transition("raised", self._now_ms())]

    def _clear(self, _rules) -> list[dict[str, Any]]:
        if not self.raised:
            return []
        self.raised = False
        return [transition("cleared", self._now_ms())]

    def _on_core(self, fn: Callable[[Any], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return core_call(self._core(), fn)


def core_call(core, fn: Callable[[Any], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run ``fn(rules)`` on the core thread, which stores and offers the transitions it returns.

    Unlike :func:`edge.rule_calls.on_core` it runs without rules too (``rules`` is then ``None``):
    the test alarm and the list of raised alarms need no rule.
    """
    if core is None or not core.is_alive():
        raise CommandError("the agent's core is not running")
    box: queue.Queue = queue.Queue(maxsize=1)
    try:
        core.inbox.put(("call", fn, box), timeout=CORE_ANSWER_WAIT)
        ok, value = box.get(timeout=CORE_ANSWER_WAIT)
    except (queue.Full, queue.Empty):
        raise CommandError(f"the agent's core did not answer within {CORE_ANSWER_WAIT:g} s") from None
    if not ok:
        raise CommandError(str(value))
    return value


def raised_alarms(core, drill: AlarmDrill) -> list[dict[str, Any]]:
    """The alarms raised now, ``{"alarm", "severity", "acknowledged"}``, the test alarm too; read on the core thread."""
    found: list[dict[str, Any]] = []

    def look(rules) -> list[dict[str, Any]]:
        found.extend(rules.raised() if rules is not None else [])
        if drill.raised:
            found.append({"alarm": TEST_ALARM, "severity": "info", "acknowledged": False})
        return []

    core_call(core, look)
    return found
