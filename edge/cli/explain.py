"""The ``linli explain`` command: what a learning rule (``routine``) has learned, and why it raised or will.

The running agent answers with its own engine's view (the ``explain`` command over the
control socket); with ``--trace`` the rule learns from a recorded trace instead, replayed
as ``linli replay`` does, and is explained as of the trace's last reading — how a
community worker sees, before a gateway goes in, what a home's readings would teach it.
This module is imported to build the parser: the rules engine loads only when the
command runs.
"""

from __future__ import annotations

import argparse
import datetime
import zoneinfo
from collections.abc import Callable
from typing import Any

from edge.cli import render
from edge.cli.common import CommandRefused, ask_agent, command, config_path
from edge.exits import EX_OK
from edge.i18n import _

EPILOG = _("""For every hour of the day a silence may begin in, on weekdays and at weekends: how many
silences the rule learned (older ones count less), how long the longest usual one lasts,
how long a silence may last before the alarm, and how often this home's silences lasted
that long. Then where the silence under way stands.
Exit status 0, 1 when the agent refuses (an alarm no rule makes, a rule that learns nothing),
65 for a bad trace, 66 when it is missing, 78 for a bad config.
examples:
  linli explain flat-302-water/routine
  linli explain --trace flat-302.csv flat-302-water/routine --json
""")


def add_command(sub: Any, add_config_option: Callable[[argparse.ArgumentParser], None],
                handler: Callable[[argparse.Namespace], int]) -> None:
    """Add ``explain`` to the ``linli`` subcommands ``sub``, run by ``handler`` (which calls :func:`run`)."""
    p = sub.add_parser("explain", help=_("what a routine rule has learned of the home, hour by hour"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("alarm", metavar="SENSOR/RULE", help=_("the rule's alarm, e.g. flat-302-water/routine"))
    p.add_argument("--trace", metavar="TRACE.csv",
                   help=_("learn from this recorded trace instead of asking the running agent"))
    p.add_argument("--json", action="store_true", help=_("print the explanation as JSON"))
    add_config_option(p)
    p.set_defaults(func=handler)


def run(args: argparse.Namespace, config_path: str, ask_agent: Callable[[str, dict], dict],
        refused: Callable[[str], Exception]) -> int:
    """Explain ``args.alarm``; ``ask_agent(name, args)`` asks the running agent, ``refused(message)`` is its error."""
    from edge.config import load_config

    config = load_config(config_path)
    if args.trace is None:
        explained = ask_agent("explain", {"alarm": args.alarm})
    else:
        explained = _from_trace(config, args.trace, args.alarm, refused)
    if args.json:
        render.emit_json(explained)
    else:
        for line in lines(explained, zoneinfo.ZoneInfo(config.gateway.timezone)):
            render.out(line)
    return EX_OK


def _from_trace(config, path: str, alarm: str, refused: Callable[[str], Exception]) -> dict[str, Any]:
    from edge.replay import TraceReplay
    from edge.rules import RuleError

    replayed = TraceReplay(config, path)
    for _transition in replayed:
        pass
    if replayed.engine.now is None:
        raise refused(_("{path} has no readings to learn from").format(path=path))
    try:
        return replayed.engine.explain(alarm, replayed.engine.now)
    except RuleError as exc:
        raise refused(str(exc)) from None


# --- the text ---------------------------------------------------------------------------------------------
def lines(explained: dict[str, Any], zone: datetime.tzinfo) -> list[str]:
    """The explanation as a technician reads it: a heading, the silence under way, the table by hour."""
    def moment(ms: int) -> str:
        return datetime.datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M")

    found = [_("{alarm} ({kind}), as of {now}").format(alarm=explained["alarm"], kind=explained["kind"],
                                                      now=moment(explained["now"]))]
    if explained["warmup_until"] is not None:
        found.append(_("still learning until {until}: meanwhile the fixed rule raises after a silence of "
                       "warmup_window").format(until=moment(explained["warmup_until"])))
    silence = explained["silence"]
    if silence is not None:
        found.append(_silence_line(silence, moment))
    found.append("")
    found += _table(explained["hours"])
    return found


def _silence_line(silence: dict[str, Any], moment: Callable[[int], str]) -> str:
    text = _("silent since {since} ({hours:g} h)").format(since=moment(silence["since"]), hours=silence["hours"])
    if silence["usual_by"] is not None:
        text += "; " + _("this home almost always uses water by {by}").format(by=moment(silence["usual_by"]))
    if silence["raised"]:
        return text + "; " + _("the alarm is raised")
    if silence["waiting_for_reading"]:
        return text + "; " + _("the alarm waits for the next reading: the meter has been silent too")
    return text + "; " + _("the alarm is due at {at}").format(at=moment(silence["alarm_at"]))


def _table(hours: list[dict[str, Any]]) -> list[str]:
    from edge.cli.render import display_width   # Chinese titles take two columns each

    per_day = [_("silences"), _("usual longest"), _("alarm after"), _("that long")]
    rows = [[_("hour")] + per_day + per_day]

    def cells(learned: dict[str, Any]) -> list[str]:
        usual = learned["usual_longest_h"]
        share = learned["longer_share"]
        return [f"{learned['silences']:g}", "-" if usual is None else f"{usual:g} h",
                f"{learned['alarm_after_h']:g} h", "-" if share is None else f"{share * 100:.1f} %"]

    for row in hours:
        rows.append([f"{row['hour']:02d}"] + cells(row["weekday"]) + cells(row["weekend"]))
    widths = [max(display_width(row[column]) for row in rows) for column in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        padded = (cell + " " * (width - display_width(cell)) for cell, width in zip(cells, widths, strict=True))
        return "  ".join(padded).rstrip()

    weekdays = _("weekdays")
    heading = " " * (widths[0] + 2) + weekdays + " " * (sum(widths[1:5]) + 2 * 4 - display_width(weekdays))
    return [heading + _("weekends")] + [line(row) for row in rows]


def _handle(args: argparse.Namespace) -> int:
    return run(args, config_path(args), lambda name, request: ask_agent(args, name, request), CommandRefused)


#: The group, joined through the ``add_command`` pattern as a module outside the package would be.
register = command(add_command, _handle)
