"""The running agent's live view, asked over the control socket once a second (``linli watch``, ``linli demo``).

Nothing here opens a device: every value comes from the agent (the ``watch`` command,
:meth:`edge.agent.Agent.live_view`). Three ways to show it:

- on a terminal, a screen redrawn in place with curses (docs/decisions/0008-watch-on-curses.md):
  the link and the outbox in the header, raised alarms on top in colour, then one row per
  sensor and quantity with its value, unit, quality, age and a sparkline of the last minutes;
- otherwise one plain line per change (a new value or quality, an alarm raised or gone, the
  link up or down), which a log or ``grep`` can take;
- with ``--json``, the same changes as one JSON object per line, for scripts.

The command is :mod:`edge.cli.watch`, which prints the lines and JSON; ``linli demo`` shows
the same screen (:func:`screen`).
"""

from __future__ import annotations

import locale
import time
from collections.abc import Callable
from typing import Any

from edge.i18n import _

#: Seconds between two questions to the agent.
INTERVAL = 1.0
SPARKS = "▁▂▃▄▅▆▇█"
ASCII_SPARKS = "_.-=*#"

Ask = Callable[[], dict[str, Any]]


def asker(socket_path: str, refused: Callable[[str], Exception]) -> Ask:
    """How the view asks the agent on ``socket_path``: its ``watch`` answer, or ``refused(error)`` raised."""
    from edge.control import request

    def ask() -> dict[str, Any]:
        reply = request(socket_path, "watch")
        if not reply.get("ok"):
            raise refused(reply.get("error") or _("the agent refused the request"))
        return reply["result"]

    return ask


def screen(ask: Ask, *, until: Callable[[], bool], tick: Callable[[], None] = lambda: None,
           colour: bool) -> None:
    """The curses screen, redrawn after each answer, until ``until()`` or q; ``tick()`` runs between (the demo's
    script). ``colour``: whether the person wants colour (the caller knows the ``NO_COLOR`` rule)."""
    import curses

    locale.setlocale(locale.LC_ALL, "")   # curses writes wide characters only under the user's locale
    curses.wrapper(lambda window: _Screen(window, colour).follow(ask, until, tick))


def follow(ask: Ask, emit: Callable[[dict[str, Any]], None], *, until: Callable[[], bool]) -> None:
    """Ask, ``emit`` each change, wait :data:`INTERVAL`, until ``until()``: the lines and JSON modes."""
    seen: dict[str, Any] = {}
    while not until():
        for event in changes(seen, ask()):
            emit(event)
        wake = time.monotonic() + INTERVAL
        while not until() and time.monotonic() < wake:
            time.sleep(0.1)   # the agent is asked once a second; --for ends within a tenth of one


# --- changes, for lines and JSON -------------------------------------------------------------------------
def changes(seen: dict[str, Any], view: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed in ``view`` since the views ``seen`` remembers (updated): each an event dict.

    >>> seen = {}
    >>> view = {"link": {"connected": True, "broker": "b:1"}, "outbox": {"depth": 0}, "alarms": [],
    ...         "sensors": [{"sensor": "s", "quantity": "q", "value": 1, "unit": "m3", "quality": "good"}]}
    >>> [e["event"] for e in changes(seen, view)], changes(seen, view)
    (['link', 'reading'], [])
    """
    events: list[dict[str, Any]] = []
    link = view["link"]
    if seen.get("link") != link["connected"]:
        seen["link"] = link["connected"]
        events.append({"event": "link", "connected": link["connected"], "broker": link["broker"],
                       "outbox_depth": view["outbox"]["depth"]})
    alarms = {a["alarm"]: a for a in view["alarms"]}
    before = seen.get("alarms", {})
    for name, alarm in alarms.items():
        if before.get(name) != alarm:
            events.append({"event": "alarm", "state": "acknowledged" if alarm["acknowledged"] else "raised",
                           "alarm": name, "severity": alarm["severity"]})
    events += [{"event": "alarm", "state": "gone", "alarm": name, "severity": alarm["severity"]}
               for name, alarm in before.items() if name not in alarms]
    seen["alarms"] = alarms
    readings = seen.setdefault("readings", {})
    for row in view["sensors"]:
        key = (row["sensor"], row["quantity"])
        shown = (row["value"], row["unit"], row["quality"])
        if readings.get(key) != shown:
            readings[key] = shown
            events.append({"event": "reading", "sensor": row["sensor"], "quantity": row["quantity"],
                           "value": row["value"], "unit": row["unit"], "quality": row["quality"]})
    return events


def line(event: dict[str, Any]) -> str:
    """One change as a plain line, e.g. ``12:00:01  pump-pressure  pressure  0.35 MPa  good``."""
    clock = time.strftime("%H:%M:%S")
    if event["event"] == "reading":
        unit = f" {event['unit']}" if event["unit"] else ""
        return f"{clock}  {event['sensor']}  {event['quantity']}  {_value(event['value'])}{unit}  {event['quality']}"
    if event["event"] == "alarm":
        states = {"raised": _("raised"), "acknowledged": _("acknowledged"), "gone": _("gone")}
        return f"{clock}  " + _("alarm {alarm} {state} ({severity})").format(
            alarm=event["alarm"], state=states[event["state"]], severity=event["severity"])
    state = _("connected") if event["connected"] else _("not connected")
    return f"{clock}  " + _("broker {broker} {state}, outbox {depth} records").format(
        broker=event["broker"], state=state, depth=event["outbox_depth"])


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def sparkline(points: list[float | None], width: int, marks: str = SPARKS) -> str:
    """The last ``width`` points as bars between their own minimum and maximum; a gap where a reading was bad.

    >>> sparkline([0, 1, 2, None, 2], 10)
    '▁▅█ █'
    """
    points = points[-width:] if width > 0 else []
    numbers = [p for p in points if p is not None]
    if not numbers:
        return " " * len(points)
    low, span = min(numbers), (max(numbers) - min(numbers)) or 1.0
    top = len(marks) - 1
    return "".join(" " if p is None else marks[round((p - low) / span * top)] for p in points)


# --- the screen --------------------------------------------------------------------------------------------
class _Screen:
    """The curses screen: header, alarms, the table; redrawn whole after each answer and on a resize."""

    def __init__(self, screen, colour: bool):
        import curses

        self.curses = curses
        self.screen = screen
        self.colours: dict[str, int] = {}
        self.marks = SPARKS if "utf" in locale.getpreferredencoding(False).lower() else ASCII_SPARKS
        curses.curs_set(0)
        screen.timeout(100)
        if colour and curses.has_colors():
            curses.start_color()
            curses.use_default_colors()
            for pair, (name, colour) in enumerate((("critical", curses.COLOR_RED), ("warning", curses.COLOR_YELLOW),
                                                   ("info", curses.COLOR_CYAN), ("ok", curses.COLOR_GREEN)), 1):
                curses.init_pair(pair, colour, -1)
                self.colours[name] = curses.color_pair(pair) | (curses.A_BOLD if name == "critical" else 0)

    def follow(self, ask: Ask, until: Callable[[], bool], tick: Callable[[], None]) -> None:
        from edge.control import AgentUnreachable

        view, problem = ask(), None      # the first answer must come: otherwise the error ends the command
        asked = time.monotonic()
        while not until():
            self.draw(view, problem)
            key = self.screen.getch()     # waits up to 0.1 s: the pause between questions
            if key in (ord("q"), ord("Q")):
                return
            tick()
            if time.monotonic() - asked >= INTERVAL:
                asked = time.monotonic()
                try:
                    view, problem = ask(), None
                except AgentUnreachable as exc:   # shown in the header; the view asks again
                    problem = str(exc)

    def draw(self, view: dict[str, Any], problem: str | None) -> None:
        screen = self.screen
        screen.erase()
        height, width = screen.getmaxyx()
        rows: list[tuple[str, int]] = [(self._header(view), self.colours.get("critical", 0) if problem else 0)]
        if problem:
            rows.append((problem, self.colours.get("critical", 0)))
        for alarm in view["alarms"]:
            state = _("acknowledged") if alarm["acknowledged"] else _("raised")
            rows.append((_("ALARM") + f"  {alarm['alarm']}  {alarm['severity']}  {state}",
                         self.colours.get(alarm["severity"], self.curses.A_BOLD)))
        rows.append(("", 0))
        rows += self._table(view["sensors"], width)
        rows.append(("", 0))
        rows.append((_("q quits"), self.curses.A_DIM))
        for y, (text, attr) in enumerate(rows[:height]):
            screen.addnstr(y, 0, text, max(0, width - 1), attr)
        screen.refresh()

    @staticmethod
    def _header(view: dict[str, Any]) -> str:
        link = view["link"]
        state = _("connected") if link["connected"] else _("not connected")
        return "  ".join((f"linli watch  {view['gateway']}", time.strftime("%H:%M:%S"),
                          _("broker {broker} {state}").format(broker=link["broker"], state=state),
                          _("outbox {depth} records").format(depth=view["outbox"]["depth"])))

    def _table(self, sensors: list[dict[str, Any]], width: int) -> list[tuple[str, int]]:
        from edge.replay import display_width   # Chinese titles take two columns each

        titles = [_("sensor"), _("quantity"), _("value"), _("unit"), _("quality"), _("age")]
        cells = [[row["sensor"], row["quantity"], _value(row["value"]), row["unit"] or "", row["quality"] or "",
                  f"{row['age_s']:g} s"] for row in sensors]
        widths = [max(display_width(r[c]) for r in [titles, *cells]) for c in range(len(titles))]

        def padded(cells: list[str]) -> str:
            return "  ".join(cell + " " * (w - display_width(cell)) for cell, w in zip(cells, widths, strict=True))

        spark_width = max(0, width - sum(widths) - 2 * len(widths) - 1)
        found = [(padded(titles) + "  " + _("last minutes"), self.curses.A_BOLD)]
        for row, cell in zip(sensors, cells, strict=True):
            attr = 0 if row["quality"] == "good" else self.colours.get("warning", 0)
            found.append((padded(cell) + "  " + sparkline(row["history"], spark_width, self.marks), attr))
        return found
