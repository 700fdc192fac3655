"""``linli replay``: run the agent's own rules over a recorded trace, with a clock driven by the trace.

The trace format and its reading are :mod:`edge.trace`. The replay is the exact
loop the agent runs, minus the wall clock: before each row, every timer the
engine has due at or before the row's time fires at its due time, then the row
is evaluated. After the last row the clock stops.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from edge.config import Config
from edge.errors import LinliError
from edge.i18n import _
from edge.rules import RuleEngine  # the agent's own engine: there is no second implementation
from edge.rules.messages import shown
from edge.trace import EX_IOERR, TraceError, TraceUnreadable, format_ts, open_trace, plain_utc, read_trace


class Engine(Protocol):
    """What a replay needs of :class:`edge.rules.RuleEngine`."""

    def evaluate(self, reading: dict[str, Any]) -> list[dict[str, Any]]: ...

    def tick(self, now_ms: int) -> list[dict[str, Any]]: ...

    def next_due(self) -> int | None: ...


# --- the replay itself -----------------------------------------------------------------------------------
def replay(engine: Engine, readings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every transition ``engine`` produces for ``readings``, in order; timers fire at their due times."""
    transitions: list[dict[str, Any]] = []
    for reading in readings:
        now = reading["ts"]
        due = engine.next_due()
        while due is not None and due <= now:
            transitions.extend(engine.tick(due))
            following = engine.next_due()
            if following is not None and following <= due:
                # A timer that stays due after firing would spin forever; say so instead of hanging.
                raise LinliError(_("the rules engine kept a timer due at {due} after firing it").format(
                    due=plain_utc(due)))
            due = following
        transitions.extend(engine.evaluate(reading))
    return transitions


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


def table(transitions: list[dict[str, Any]], zone: datetime.tzinfo) -> str:
    """The transitions as an aligned text table, one per line, under a header."""
    header = [_("time"), _("alarm"), _("state"), _("severity"), _("value"), _("limit")]
    rows = [[format_ts(t["ts"], zone), t["alarm"], t["state"], str(t.get("severity") or ""),
             shown(t.get("value")), shown(t.get("limit"))] for t in transitions]
    widths = [max(_width(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ("  ".join(cell + " " * (width - _width(cell)) for cell, width in zip(row, widths, strict=True))
             for row in [header, *rows])
    return "\n".join(line.rstrip() for line in lines)


def _width(text: str) -> int:
    # Chinese headers take two columns each on a terminal.
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1 for ch in text)


@dataclass
class Replayed:
    """What a replay of a trace produced."""

    transitions: list[dict[str, Any]]
    rows: int
    #: (sensor, quantity) pairs in the trace that no rule looks at — usually a misspelt sensor id
    unwatched: list[tuple[str, str]]


def replay_trace(config: Config, path: str) -> Replayed:
    """Replay the trace file at ``path`` through the rules of ``config``, as the agent would have judged it."""

    seen: set[tuple[str, str]] = set()
    rows = 0

    def noted(readings: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        nonlocal rows
        for reading in readings:
            rows += 1
            seen.add((reading["sensor"], reading["quantity"]))
            yield reading

    with open_trace(path) as file:
        engine = RuleEngine(config.rules, timezone=config.gateway.timezone)
        try:
            transitions = replay(engine, noted(read_trace(file, name=os.path.basename(path))))
        except UnicodeDecodeError as exc:
            # exc.start counts from the decoder's current chunk, not the file: no position is better than a wrong one.
            raise TraceError(_("{name} is not UTF-8 text ({reason}); save it as UTF-8").format(
                name=os.path.basename(path), reason=exc.reason)) from None
        except OSError as exc:
            raise TraceUnreadable(_('cannot read "{path}": {reason}').format(
                path=path, reason=exc.strerror or exc), EX_IOERR) from None
    watched = {(rule.sensor, rule.quantity) for rule in config.rules}
    return Replayed(transitions, rows, sorted(seen - watched))
