"""Where a reading is judged and stored: the core thread, the outbox's only writer.

Bus threads and the uplink never touch the outbox's writer side; they put
messages on the core's bounded inbox:

* ``("reading", record, state)`` — a stamped reading, with optional driver
  state to persist alongside it (e.g. a pulse total);
* ``("acked", seqs)`` — the broker acknowledged these seqs; delete them;
* ``("commit", event)`` — commit now, then set the event;
* ``("sync", event)`` — set the event: everything queued before it has been handled (before a drain at shutdown);
* ``("call", fn, box)`` — run ``fn(rules)`` here, on the thread that owns the rules, add the
  transitions it returns and put ``(True, transitions)`` or ``(False, exception)`` in ``box``
  (how commands such as away or acknowledge reach the engine);
* ``("event", record)`` — a change made by a command (:mod:`edge.events`): stored at STATUS
  priority and committed at once;
* ``("stop",)`` — commit what is pending and end.

Every stored reading is offered to the reading sinks (what ``linli watch`` shows,
:mod:`edge.live`); like the alarm sinks they run here and must not block.
For every reading the rules (when configured) are asked for alarm
transitions; those go to the outbox at ALARM priority (committed at once, with
the rules' state) and to the local alarm sinks (buzzer, LED, relay). Otherwise
the rules' state (``RULES_STATE``) and the drivers' state are offered to the
outbox about once a minute, which writes them only when they changed
(docs/decisions/0005-sd-card-writes.md): a restart neither forgets a running
window nor raises an active alarm again. What learning rules learned
(``LEARNED_STATE``) is offered every six hours and at the end: losing a few
hours of months of learning to a power cut costs nothing, rewriting a few
kilobytes every minute would cost the card (decision 0007).

An ``event`` record is stored at STATUS priority, not ALARM: it is an audit trail, not
something a person must act on, so it never holds back an alarm nor takes the window slots
the uplink keeps for alarms; but it leaves ahead of waiting telemetry and is never shed
to make room (only telemetry is). It is committed at once, as an alarm is: commands are
rare, and a change made just before a power cut must not vanish from the trail.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterable, Protocol

from buffer.errors import OutboxError, OutboxRecordError
from buffer.outbox import Outbox, Priority

log = logging.getLogger("linli.core")

#: Bounded so a stalled writer cannot eat the Pi's memory; producers block briefly, then count a loss.
INBOX_SIZE = 20_000
_PUT_TIMEOUT = 2.0


#: The outbox state key under which the rules engine's snapshot is kept.
RULES_STATE = "rules"
#: ... and what its learning rules learned, offered far less often: it is larger and changes slowly.
LEARNED_STATE = "rules/learned"
LEARNED_INTERVAL = 6 * 3600.0


class Rules(Protocol):
    """What the core needs of a rules engine (edge.rules.RuleEngine)."""

    def evaluate(self, reading: dict[str, Any]) -> list[dict[str, Any]]: ...

    def tick(self, now_ms: int) -> list[dict[str, Any]]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def learned(self) -> dict[str, Any]: ...

    def learning(self, now_ms: int) -> list[dict[str, Any]]: ...


AlarmSink = Callable[[dict[str, Any]], None]
ReadingSink = Callable[[dict[str, Any]], None]


class Core(threading.Thread):
    """Judge readings, write the outbox, delete what the broker acknowledged."""

    def __init__(self, outbox: Outbox, *, rules: Rules | None = None,
                 alarm_sinks: Iterable[AlarmSink] = (), reading_sinks: Iterable[ReadingSink] = (),
                 now_ms: Callable[[], int] | None = None):
        super().__init__(name="linli-core", daemon=True)
        self.outbox = outbox
        self.rules = rules
        self.alarm_sinks = list(alarm_sinks)
        self.reading_sinks = list(reading_sinks)
        self.inbox: queue.Queue = queue.Queue(maxsize=INBOX_SIZE)
        self.heartbeat = time.monotonic()
        self.lost_readings = 0
        self.refused_records = 0
        self.commit_error: str | None = None
        self.error: BaseException | None = None
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._learned_offered = time.monotonic()
        #: The learning rules' warm-up as of about a minute ago (``RuleEngine.learning``), for ``health``:
        #: read by other threads, replaced whole by this one.
        self.learning: list[dict[str, Any]] = [] if rules is None else rules.learning(self._now_ms())

    # --- producers (any thread) -------------------------------------------------------------
    def submit_reading(self, record: dict[str, Any], state: dict[str, Any] | None = None) -> bool:
        """Queue a reading; ``False`` (and counted) if the core is stalled for too long."""
        try:
            self.inbox.put(("reading", record, state), timeout=_PUT_TIMEOUT)
            return True
        except queue.Full:
            self.lost_readings += 1
            log.error("core inbox full: reading of %s lost (%d so far)", record.get("sensor"), self.lost_readings)
            return False

    def submit_event(self, record: dict[str, Any]) -> bool:
        """Queue an ``event`` record (:mod:`edge.events`); ``False`` if the core is stalled for too long."""
        try:
            self.inbox.put(("event", record), timeout=_PUT_TIMEOUT)
            return True
        except queue.Full:
            return False

    def submit_acked(self, seqs: list[int]) -> None:
        """Called by the uplink thread with seqs the broker acknowledged."""
        self.inbox.put(("acked", seqs))

    def commit_now(self, timeout: float = 5.0) -> bool:
        """Have the core commit everything pending; ``True`` once it has."""
        done = threading.Event()
        self.inbox.put(("commit", done))
        return done.wait(timeout)

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until every message queued before this call is handled (nothing is forced to disk)."""
        done = threading.Event()
        self.inbox.put(("sync", done))
        return done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Commit everything pending and end the thread."""
        if self.is_alive():
            self.inbox.put(("stop",))
            self.join(timeout)

    # --- the thread ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the agent's watchdog sees the dead heartbeat and reports this
            self.error = exc
            log.exception("core thread failed")

    def _loop(self) -> None:
        outbox = self.outbox
        while True:
            self.heartbeat = time.monotonic()
            due = outbox.seconds_until_due()
            timeout = 1.0 if due is None else max(0.0, min(due, 1.0))
            try:
                item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is not None:
                if item[0] == "stop":
                    self._drain_without_blocking()
                    if self.rules is not None:
                        outbox.set_state(RULES_STATE, self.rules.snapshot())
                        outbox.set_state(LEARNED_STATE, self.rules.learned())
                    self._commit()
                    return
                self._handle(item)
                # Take everything already waiting before deciding to commit: that is the group commit.
                self._drain_without_blocking()
            if self.rules is not None:
                self._raise(self.rules.tick(self._now_ms()))
                if outbox.state_due():
                    outbox.set_state(RULES_STATE, self.rules.snapshot())
                    self.learning = self.rules.learning(self._now_ms())
                if time.monotonic() - self._learned_offered >= LEARNED_INTERVAL:
                    self._learned_offered = time.monotonic()
                    outbox.set_state(LEARNED_STATE, self.rules.learned())
            if outbox.commit_due():
                self._commit()

    def _commit(self) -> None:
        """Commit; an I/O error keeps the records pending (the outbox holds them) and is retried."""
        try:
            self.outbox.commit()
            self.commit_error = None
        except OutboxError as exc:
            if str(exc) != self.commit_error:
                log.error("%s — keeping the records in memory and retrying", exc)
            self.commit_error = str(exc)

    def _drain_without_blocking(self) -> None:
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            if item[0] == "stop":
                # keep it for the main loop so the stop is honoured after this batch
                self.inbox.put(item)
                return
            self._handle(item)

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "reading":
            _, record, state = item
            if not self._add(record, Priority.TELEMETRY):
                return
            if state is not None:
                self.outbox.set_state(f"driver/{record['sensor']}", state)
            for sink in self.reading_sinks:
                sink(record)
            if self.rules is not None:
                self._raise(self.rules.evaluate(record))
        elif kind == "event":
            if self._add(item[1], Priority.STATUS):
                self._commit()
        elif kind == "acked":
            self.outbox.ack(item[1])
        elif kind == "commit":
            self._commit()
            item[1].set()
        elif kind == "sync":
            item[1].set()
        elif kind == "call":
            _, fn, box = item
            try:
                transitions = fn(self.rules)
            except Exception as exc:  # handed back to the caller, who turns it into a reply
                box.put((False, exc))
            else:
                self._raise(transitions)
                box.put((True, transitions))
        else:  # a programming error, not a field condition
            raise ValueError(f"unknown core message {kind!r}")

    def _add(self, record: dict[str, Any], priority: Priority) -> bool:
        """Add to the outbox; a record it refuses (a driver bug) is logged and counted, never fatal."""
        try:
            self.outbox.add(record, priority)
            return True
        except OutboxRecordError as exc:
            self.refused_records += 1
            log.error("record refused by the outbox (%s): %r", exc, record)
            return False
        except OutboxError as exc:  # an alarm's immediate commit failed: it stays pending, retried
            self.commit_error = str(exc)
            log.error("%s — keeping the records in memory and retrying", exc)
            return True

    def _raise(self, transitions: list[dict[str, Any]]) -> None:
        if transitions and self.rules is not None:
            # An alarm commits at once: the rules' state must go in the same commit, or a crash right
            # after it restores rules that have not raised (or acknowledged) what was already published.
            self.outbox.set_state(RULES_STATE, self.rules.snapshot())
        for transition in transitions:
            self._add(transition, Priority.ALARM)
            for sink in self.alarm_sinks:
                try:
                    sink(transition)
                except Exception:  # a broken buzzer must not stop alarms reaching the outbox
                    log.exception("alarm output failed for %s", transition.get("alarm"))
