"""The rules engine: readings and clock ticks in, alarm transitions out.

Pure on purpose — no I/O, no threads, no wall clock. Time comes only from the
readings' ``ts`` and the ``now_ms`` arguments, so the agent's core thread and
``linli replay`` run exactly this code.

>>> from edge.rules.config import RuleConfig
>>> engine = RuleEngine([RuleConfig("silent", "meter", "volume", "stale", params={"after": 60.0})])
>>> engine.evaluate({"sensor": "meter", "quantity": "volume", "value": 1.5, "quality": "good", "ts": 0})
[]
>>> engine.next_due()
60000
>>> [(t["alarm"], t["state"], t["ts"]) for t in engine.tick(90_000)]
[('meter/silent', 'raised', 60000)]
"""

from __future__ import annotations

import copy
import math
import zoneinfo
from collections.abc import Sequence
from typing import Any

from edge.rules.alarm import Alarm
from edge.rules.config import RuleConfig
from edge.rules.kinds import kind
from edge.rules.timers import TimerQueue
from edge.rules.window import Calendar

SNAPSHOT_VERSION = 1
#: The alarm reporting the gateway's own away state (``<sensor>/<rule>`` like every alarm).
AWAY_ALARM = "gateway/away"


class RuleError(ValueError):
    """A request the engine cannot carry out: an unknown alarm, an away time in the past, a bad snapshot."""


class _Unit:
    """One rule: its detector (the kind's arithmetic) and its alarm (the shared lifecycle)."""

    def __init__(self, rule: RuleConfig, calendar: Calendar, number: int):
        self.rule = rule
        self.number = number  # its place in the engine's rules: the first of timers due together fires first
        self.detector = kind(rule.kind).detector(rule, calendar)
        self.alarm = Alarm(rule, calendar)

    def due(self) -> int | None:
        mine, theirs = self.detector.due(), self.alarm.due()
        if mine is None:
            return theirs
        return mine if theirs is None or mine < theirs else theirs

    def fire(self, now: int) -> list[dict[str, Any]]:
        # The detector first: its timer may change the signal the alarm's own timer is about to judge.
        found: list[dict[str, Any]] = []
        mine = self.detector.due()
        if mine is not None and mine <= now:
            signal = self.detector.fire(now)
            if signal is not None:
                found += self.alarm.signal(now, signal)
                return found
        found += self.alarm.settle(now)
        return found


class RuleEngine:
    """Evaluate ``rules`` against readings; ``timezone`` decides local days and active windows."""

    def __init__(self, rules: Sequence[RuleConfig], timezone: str = "Asia/Shanghai"):
        self.calendar = Calendar(zoneinfo.ZoneInfo(timezone))
        self._units = [_Unit(rule, self.calendar, number) for number, rule in enumerate(rules)]
        self._by_alarm = {unit.rule.alarm: unit for unit in self._units}
        self._by_input: dict[tuple[str, str], list[_Unit]] = {}
        for unit in self._units:
            self._by_input.setdefault((unit.rule.sensor, unit.rule.quantity), []).append(unit)
        self.now: int | None = None          # the latest time the engine was told
        self.away_until: int | None = None
        # Each unit's due time, kept up to date by _schedule after anything that may move it.
        self._timers = TimerQueue(len(self._units))
        self._schedule(self._units)

    def _schedule(self, units: Sequence[_Unit]) -> None:
        for unit in units:
            self._timers.set(unit.number, unit.due())

    # --- the clock ------------------------------------------------------------------------------------
    def _advance(self, now: int) -> None:
        if self.now is None:
            for unit in self._units:
                unit.detector.start(now)
            self._schedule(self._units)
        if self.now is None or now > self.now:
            self.now = now

    def next_due(self) -> int | None:
        """The earliest pending timer (ms), or ``None``; a replay advances its clock to it."""
        return self._earliest()[0]

    def tick(self, now_ms: int) -> list[dict[str, Any]]:
        """Fire every timer due at or before ``now_ms``, in time order; each transition carries its due time."""
        self._advance(now_ms)
        found: list[dict[str, Any]] = []
        last: tuple[int, int] | None = None
        while True:
            due, index = self._earliest()
            if due is None or due > now_ms:
                return found
            if (due, index) == last:  # a timer that does not move after firing would spin the core forever
                raise RuleError(f"rule {self._units[index].rule.alarm if index >= 0 else AWAY_ALARM} "
                                f"kept its timer at {due} after firing it")
            last = (due, index)
            if index < 0:
                found += self._end_away(due)
            else:
                unit = self._units[index]
                found += unit.fire(due)
                self._schedule((unit,))

    def _earliest(self) -> tuple[int | None, int]:
        """The earliest timer as ``(due, rule's number)``; away's end is number -1 and so first among equals."""
        first = self._timers.earliest()
        if self.away_until is not None and (first is None or self.away_until <= first[0]):
            return self.away_until, -1
        return first if first is not None else (None, -1)

    # --- readings -------------------------------------------------------------------------------------
    def evaluate(self, reading: dict[str, Any]) -> list[dict[str, Any]]:
        """Judge one reading (``sensor``, ``quantity``, ``value``, ``quality``, ``ts``) after the timers due by then.

        A ``bad`` reading, or one without a finite value, never satisfies or breaks a
        value condition; only ``stale`` hears it (as not a good reading).
        """
        units = self._by_input.get((reading.get("sensor"), reading.get("quantity")))
        ts = reading["ts"]
        found = self.tick(ts)
        if not units:
            return found
        value = reading.get("value")
        usable = reading.get("quality") != "bad" and value is not None and not (
            isinstance(value, float) and not math.isfinite(value))
        schedule = self._timers.set
        for unit in units:
            if not usable and not unit.detector.hears_bad:
                continue
            signal = unit.detector.reading(ts, value, usable)
            if signal is not None:
                found += unit.alarm.signal(ts, signal)
            schedule(unit.number, unit.due())
        return found

    # --- people ---------------------------------------------------------------------------------------
    def acknowledge(self, alarm: str, now_ms: int) -> list[dict[str, Any]]:
        """Acknowledge ``"<sensor>/<rule id>"``; ``[]`` when it is not raised or already acknowledged."""
        unit = self._by_alarm.get(alarm)
        if unit is None:
            raise RuleError(f"no rule makes the alarm {alarm!r}; known: {', '.join(sorted(self._by_alarm)) or 'none'}")
        found = self.tick(now_ms) + unit.alarm.acknowledge(now_ms)
        self._schedule((unit,))
        return found

    def set_away(self, until_ms: int | None, now_ms: int) -> list[dict[str, Any]]:
        """Away until ``until_ms`` (``None``: back home now). Rules with ``suppress_when_away`` stay silent meanwhile.

        Away itself is reported as the alarm ``gateway/away`` (``info``): raised when it
        begins, cleared when it ends.
        """
        found = self.tick(now_ms)
        if until_ms is None:
            return found + (self._end_away(now_ms) if self.away_until is not None else [])
        if until_ms <= now_ms:
            raise RuleError(f"away until {until_ms} ms is not after now ({now_ms} ms)")
        starting = self.away_until is None
        self.away_until = until_ms
        found.append(_away_transition("raised", now_ms, until_ms))
        if starting:
            for unit in self._units:
                if unit.rule.suppress_when_away:
                    found += unit.alarm.suppress(now_ms)
                    self._schedule((unit,))
        return found

    def _end_away(self, now: int) -> list[dict[str, Any]]:
        self.away_until = None
        found = [_away_transition("cleared", now, None)]
        for unit in self._units:
            if unit.rule.suppress_when_away:
                found += unit.alarm.unsuppress(now, unit.detector.resume(now))
                self._schedule((unit,))
        return found

    # --- persistence ----------------------------------------------------------------------------------
    def raised(self) -> list[dict[str, Any]]:
        """The alarms raised now, as ``{"alarm", "severity", "acknowledged"}``.

        Transitions tell who listens what changes; this tells a listener that starts late
        (a buzzer after a restart, when :meth:`restore` brought raised alarms back) where things stand.
        """
        found = [{"alarm": unit.rule.alarm, "severity": unit.rule.severity, "acknowledged": unit.alarm.acked}
                 for unit in self._units if unit.alarm.raised]
        if self.away_until is not None:
            found.append({"alarm": AWAY_ALARM, "severity": "info", "acknowledged": False})
        return found

    def snapshot(self) -> dict[str, Any]:
        """The full state, JSON-able: timers, references, totals, bins, alarm states, away."""
        return {
            "version": SNAPSHOT_VERSION,
            "now": self.now,
            "away_until": self.away_until,
            "rules": {unit.rule.alarm: {"fingerprint": unit.rule.fingerprint(),
                                        "alarm": unit.alarm.state(),
                                        "detector": unit.detector.state()} for unit in self._units},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`snapshot` after a restart. A raised alarm stays raised and is not raised again.

        A rule whose kind or keys changed since keeps its alarm state but starts its
        detector afresh; rules that no longer exist are forgotten.
        """
        if not isinstance(state, dict) or state.get("version") != SNAPSHOT_VERSION:
            raise RuleError(f"not a rules snapshot of version {SNAPSHOT_VERSION}")
        saved = state.get("rules", {})
        try:
            for unit in self._units:
                entry = saved.get(unit.rule.alarm)
                if entry is None:
                    continue
                unit.alarm.load(entry["alarm"])
                if entry["fingerprint"] == unit.rule.fingerprint():
                    unit.detector.load(entry["detector"])
        except (KeyError, TypeError) as exc:
            raise RuleError(f"the rules snapshot is damaged: missing {exc}") from None
        finally:
            self._schedule(self._units)  # what was loaded, even of a damaged snapshot, moved the timers
        self.now = state.get("now")
        self.away_until = state.get("away_until")

    # --- what detectors learned ------------------------------------------------------------------------
    def learned(self) -> dict[str, Any]:
        """What the learning detectors (``routine``) have learned, JSON-able, apart from :meth:`snapshot`.

        It changes when a silence ends and is written far more rarely than the snapshot
        (:mod:`edge.core`: a few hours' learning lost to a power cut is nothing; rewriting it every
        minute would wear the card).
        Each entry carries the detector's ``learning_key``: a rule whose thresholds changed keeps what it
        learned, one that now learns something else starts afresh.
        """
        return {unit.rule.alarm: {"key": unit.detector.learning_key(), "state": unit.detector.learned()}
                for unit in self._units if unit.detector.learns}

    def restore_learned(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`learned` returned, before or after a restart."""
        if not isinstance(state, dict):
            raise RuleError("the learned routines are damaged: not a table")
        for unit in self._units:
            entry = state.get(unit.rule.alarm)
            if not unit.detector.learns or not isinstance(entry, dict):
                continue
            if entry.get("key") != unit.detector.learning_key():
                continue
            try:
                unit.detector.load_learned(entry["state"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise RuleError(f"the learned routine of {unit.rule.alarm} is damaged: {exc}") from None

    def fork(self) -> RuleEngine:
        """An engine that goes on from exactly here on its own (``linli evaluate``'s incidents).

        The state is copied; what learning rules learned is shared until either engine learns more.
        """
        twin = RuleEngine([unit.rule for unit in self._units], timezone=self.calendar.zone.key)
        twin.restore(copy.deepcopy(self.snapshot()))
        for mine, theirs in zip(self._units, twin._units, strict=True):
            if mine.detector.learns:
                theirs.detector.learn_as(mine.detector)
        return twin

    def learning(self, now_ms: int) -> list[dict[str, Any]]:
        """The learning rules' progress, for ``status``: ``{"alarm", "warmup_until"}`` (None once learned)."""
        return [{"alarm": unit.rule.alarm, "warmup_until": unit.detector.warmup_until(now_ms)}
                for unit in self._units if unit.detector.learns]

    def explain(self, alarm: str, now_ms: int) -> dict[str, Any]:
        """What the learning rule behind ``alarm`` has learned (``linli explain``), as of ``now_ms``."""
        unit = self._by_alarm.get(alarm)
        if unit is None:
            raise RuleError(f"no rule makes the alarm {alarm!r}; known: {', '.join(sorted(self._by_alarm)) or 'none'}")
        if not unit.detector.learns:
            learning = sorted(u.rule.alarm for u in self._units if u.detector.learns)
            raise RuleError(f"{alarm} is a rule of kind {unit.rule.kind}, which learns nothing; rules that learn: "
                            f"{', '.join(learning) or 'none'}")
        return {"alarm": alarm, "kind": unit.rule.kind, "now": now_ms, **unit.detector.explain(now_ms)}


def _away_transition(state: str, ts: int, until: int | None) -> dict[str, Any]:
    if state == "raised":
        english, chinese = "the home is set to away", "住户外出（离家模式）"
    else:
        english, chinese = "the home is no longer away", "离家模式已结束"
    return {"kind": "alarm", "alarm": AWAY_ALARM, "state": state, "severity": "info", "value": until,
            "limit": None, "ts": ts, "rule": "away", "message": english, "message_zh": chinese}
