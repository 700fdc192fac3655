"""``linli replay``: run the agent's own rules over a recorded trace, with a clock driven by the trace.

The trace format and its reading are :mod:`edge.trace`. The replay is the exact
loop the agent runs, minus the wall clock: before each row, every timer the
engine has due at or before the row's time fires at its due time, then the row
is evaluated. After the last row the clock stops.

Everything streams: a transition is handed on as soon as the rules produce it,
and what is kept about the whole trace is counts, so memory stays the same for
a day of readings or ten years of them.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from edge.config import Config
from edge.errors import LinliError
from edge.i18n import _, ngettext
from edge.rules import RuleConfig, RuleEngine  # the agent's own engine: there is no second implementation
from edge.rules.text import shown
from edge.trace import format_ts, open_trace, plain_utc, read_trace, shown_field, trace_lines

#: Sensors no rule watches are named up to this many; a trace full of stray ids needs no list as long.
MAX_UNWATCHED_NAMED = 20


class Engine(Protocol):
    """What a replay needs of :class:`edge.rules.RuleEngine`."""

    def evaluate(self, reading: dict[str, Any]) -> list[dict[str, Any]]: ...

    def tick(self, now_ms: int) -> list[dict[str, Any]]: ...

    def next_due(self) -> int | None: ...


class ReplayStopped(LinliError):
    """A replay failed after it had already handed on transitions; says so beside the cause, exits as the cause."""

    def __init__(self, cause: LinliError, transitions: int):
        super().__init__(str(cause) + "\n  " + ngettext(
            "the replay stopped there: the {count} alarm transition written before comes from the rows before it",
            "the replay stopped there: the {count} alarm transitions written before come from the rows before it",
            transitions).format(count=transitions))
        self.exit_code = cause.exit_code


# --- the replay itself -----------------------------------------------------------------------------------
def replay(engine: Engine, readings: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each transition ``engine`` produces for ``readings``, in order, as soon as it is produced.

    Timers fire at their due times, before the first row at or after them.
    """
    for reading in readings:
        yield from fire_timers(engine, reading["ts"])
        yield from engine.evaluate(reading)


def fire_timers(engine: Engine, now: int) -> Iterator[dict[str, Any]]:
    """The transitions of every timer ``engine`` has due at or before ``now``, each fired at its due time."""
    due = engine.next_due()
    while due is not None and due <= now:
        yield from engine.tick(due)
        following = engine.next_due()
        if following is not None and following <= due:
            # A timer that stays due after firing would spin forever; say so instead of hanging.
            raise LinliError(_("the rules engine kept a timer due at {due} after firing it").format(
                due=plain_utc(due)))
        due = following


class TraceReplay:
    """The trace file at ``path`` replayed through the rules of ``config``: iterate for its transitions.

    The file is opened and read as the iteration goes; the tally (``rows``,
    ``transitions``, ``unwatched``) grows with it and is complete once it ends.
    """

    def __init__(self, config: Config, path: str):
        self.config = config
        self.path = path
        self.rows = 0
        self.transitions = 0
        #: (sensor, quantity) pairs in the trace no rule looks at — usually a misspelt sensor id — as messages
        #: show them, the first :data:`MAX_UNWATCHED_NAMED` of them; ``more_unwatched`` when there were others.
        self.unwatched: list[tuple[str, str]] = []
        self.more_unwatched = False
        self._watched = {(rule.sensor, rule.quantity) for rule in config.rules}
        #: The engine the rows go through: once the iteration ended, what the rules hold at the trace's end
        #: (``linli explain --trace`` asks it what a routine learned).
        self.engine = RuleEngine(config.rules, timezone=config.gateway.timezone)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        engine = self.engine
        with open_trace(self.path) as file:
            readings = read_trace(trace_lines(file, self.path), name=os.path.basename(self.path))
            try:
                for transition in replay(engine, self._tallied(readings)):
                    self.transitions += 1
                    yield transition
            except LinliError as exc:
                if self.transitions:
                    raise ReplayStopped(exc, self.transitions) from None
                raise

    def _tallied(self, readings: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for reading in readings:
            self.rows += 1
            pair = (reading["sensor"], reading["quantity"])
            if pair not in self._watched and not self.more_unwatched:
                named = (shown_field(pair[0]), shown_field(pair[1]))
                if named not in self.unwatched:
                    if len(self.unwatched) < MAX_UNWATCHED_NAMED:
                        self.unwatched.append(named)
                    else:
                        self.more_unwatched = True
            yield reading


# --- output ---------------------------------------------------------------------------------------------
def json_line(transition: dict[str, Any], zone: datetime.tzinfo) -> str:
    """One transition as ``linli replay --json`` prints it."""
    return json.dumps({
        "alarm": transition["alarm"],
        "state": transition["state"],
        "ts": format_ts(transition["ts"], zone),
        "severity": transition.get("severity"),
        "value": transition.get("value"),
        "limit": transition.get("limit"),
    }, ensure_ascii=False)


class TextTable:
    """Transitions as aligned text, one line each as it comes.

    The widths are set before the first line from what the rules can produce (their
    alarm names and severities, a time to the second, a six-digit value); a longer
    cell, such as a time with milliseconds, takes the room it needs on its own line.
    """

    #: The widest cells a replay usually makes in the columns whose content the rules do not name.
    _TYPICAL = {"time": "2026-01-05T08:00:00+08:00", "state": "cleared", "value": "-386.214"}

    def __init__(self, rules: Sequence[RuleConfig], zone: datetime.tzinfo):
        self.zone = zone
        titles = [_("time"), _("alarm"), _("state"), _("severity"), _("value"), _("limit")]
        widest = [self._TYPICAL["time"], max((rule.alarm for rule in rules), key=len, default=""),
                  self._TYPICAL["state"], max((rule.severity for rule in rules), key=len, default=""),
                  self._TYPICAL["value"], ""]
        self._widths = [max(display_width(title), display_width(cell))
                        for title, cell in zip(titles, widest, strict=True)]
        self.header = self._line(titles)

    def line(self, transition: dict[str, Any]) -> str:
        return self._line([format_ts(transition["ts"], self.zone), transition["alarm"], transition["state"],
                           str(transition.get("severity") or ""), shown(transition.get("value")),
                           shown(transition.get("limit"))])

    def _line(self, cells: list[str]) -> str:
        padded = (cell + " " * (width - display_width(cell))
                  for cell, width in zip(cells, self._widths, strict=True))
        return "  ".join(padded).rstrip()


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal, where a Chinese character takes two."""
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1 for ch in text)
