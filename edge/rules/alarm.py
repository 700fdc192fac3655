"""The lifecycle every rule shares: delays, active window, away mode, latch and acknowledge.

An :class:`Alarm` follows its detector's :class:`~edge.rules.detector.Signal`:

* not raised: the signal must be *out* inside the active window (and not
  suppressed by away mode) continuously for ``for``; it is raised at the end of
  that delay (``ts`` = when the delay ran out, or the reading itself for no delay);
* raised: the signal must be *back* continuously for ``clear_for``; then it clears,
  unless it is latched and not yet acknowledged — then it clears when acknowledged.

The window only gates raising: an alarm raised at 05:55 in a ``22:00-06:00``
window stays raised until its condition is gone, it is not cleared by the clock.
"""

from __future__ import annotations

from typing import Any

from edge.rules.config import RuleConfig
from edge.rules.detector import Signal, seconds_ms
from edge.rules.messages import describe
from edge.rules.window import Calendar


class Alarm:
    """The published state of one rule's alarm, driven by signals and timers."""

    fields = ("raised", "acked", "clear_held", "out", "back", "value", "limit",
              "raise_since", "clear_since", "window_wake", "suppressed")

    def __init__(self, rule: RuleConfig, calendar: Calendar):
        self.rule = rule
        self.calendar = calendar
        self.for_ms = seconds_ms(rule.params.get("for", 0.0))
        self.clear_for_ms = seconds_ms(rule.params.get("clear_for", 0.0))
        self.raised = False
        self.acked = False
        self.clear_held = False      # latched: the condition is gone, waiting for an acknowledge
        self.out = False
        self.back = True
        self.value: Any = None
        self.limit: Any = None
        self.raise_since: int | None = None
        self.clear_since: int | None = None
        self.window_wake: int | None = None
        self.suppressed = False
        self.words: tuple[str, str] | None = None

    # --- inputs ---------------------------------------------------------------------------------------
    def signal(self, now: int, signal: Signal) -> list[dict[str, Any]]:
        self.out, self.back, self.value, self.limit = signal.out, signal.back, signal.value, signal.limit
        self.words = signal.words
        return self.settle(now)

    def settle(self, now: int) -> list[dict[str, Any]]:
        """Re-judge at ``now`` (a signal changed, a delay ran out, the window opened or closed)."""
        if not self.raised and not self.out:  # quiet, as after nearly every reading: nothing to arm or wake for
            self.clear_since = self.raise_since = self.window_wake = None
            return []
        found: list[dict[str, Any]] = []
        if not self.raised:
            self.clear_since = None
            armed = self.out and not self.suppressed and self._in_window(now)
            if not armed:
                self.raise_since = None
            elif self.raise_since is None:
                self.raise_since = now
            if armed and now >= self.raise_since + self.for_ms:
                found.append(self._raise(self.raise_since + self.for_ms))
        elif self.back:
            if self.clear_since is None:
                self.clear_since = now
            if not self.clear_held and now >= self.clear_since + self.clear_for_ms:
                if self.rule.latch and not self.acked:
                    self.clear_held = True
                else:
                    found.append(self._clear(self.clear_since + self.clear_for_ms))
        else:
            self.clear_since, self.clear_held = None, False
        self.window_wake = self._window_wake(now)
        return found

    def acknowledge(self, now: int) -> list[dict[str, Any]]:
        """Somebody saw the alarm. Only a raised, not yet acknowledged alarm has anything to acknowledge."""
        if not self.raised or self.acked:
            return []
        self.acked = True
        found = [self.transition("acknowledged", now)]
        if self.clear_held:
            found.append(self._clear(now))
            self.window_wake = self._window_wake(now)
        return found

    def suppress(self, now: int) -> list[dict[str, Any]]:
        """Away mode began: nothing is raised meanwhile and a raised alarm is cleared (nobody is home)."""
        self.suppressed = True
        self.raise_since = None
        found = [self._clear(now)] if self.raised else []
        self.window_wake = self._window_wake(now)
        return found

    def unsuppress(self, now: int, signal: Signal | None) -> list[dict[str, Any]]:
        self.suppressed = False
        return self.signal(now, signal) if signal is not None else self.settle(now)

    # --- timers ---------------------------------------------------------------------------------------
    def due(self) -> int | None:
        if not self.raised and self.raise_since is not None:
            due = self.raise_since + self.for_ms
        elif self.raised and self.clear_since is not None and not self.clear_held:
            due = self.clear_since + self.clear_for_ms
        else:
            due = None
        if self.window_wake is not None and (due is None or self.window_wake < due):
            return self.window_wake
        return due

    def _in_window(self, now: int) -> bool:
        return self.rule.active is None or self.calendar.in_window(self.rule.active, now)

    def _window_wake(self, now: int) -> int | None:
        """When the window opening or closing could change the outcome: only while out and not raised."""
        if self.rule.active is None or self.raised or not self.out or self.suppressed:
            return None
        return self.calendar.next_window_change(self.rule.active, now)

    # --- transitions ----------------------------------------------------------------------------------
    def _raise(self, ts: int) -> dict[str, Any]:
        self.raised, self.acked, self.clear_held = True, False, False
        self.raise_since = None
        return self.transition("raised", ts)

    def _clear(self, ts: int) -> dict[str, Any]:
        self.raised, self.acked, self.clear_held = False, False, False
        self.clear_since = None
        return self.transition("cleared", ts)

    def transition(self, state: str, ts: int) -> dict[str, Any]:
        rule = self.rule
        english, chinese = describe(rule, state, self.value, self.limit, suppressed=self.suppressed,
                                    words=self.words)
        return {"kind": "alarm", "alarm": rule.alarm, "state": state, "severity": rule.severity,
                "value": self.value, "limit": self.limit, "ts": ts, "rule": rule.kind,
                "message": english, "message_zh": chinese}

    def state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.fields}

    def load(self, state: dict[str, Any]) -> None:
        for name in self.fields:
            setattr(self, name, state[name])


