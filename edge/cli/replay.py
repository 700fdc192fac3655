"""``linli replay``: the rules over a recorded trace, each alarm printed as soon as they raise it."""

from __future__ import annotations

import argparse
import zoneinfo

from edge.cli import render
from edge.cli.common import Subcommands, add_config_option, config_path
from edge.config import load_config
from edge.exits import EX_OK
from edge.i18n import _, ngettext

EPILOG = _("""The trace's ts is ISO 8601 with an offset or epoch milliseconds, rows in time order;
value is a number, true or false. Timers fire at their due times between rows; after
the last row the clock stops. Each alarm is printed as soon as the rules raise it, so a
bad row stops the replay after the alarms of the rows before it. Exit status 0, 65 for
a bad trace (the message names the line), 66 when it is missing, 74 when it cannot be read.
example: linli replay --config edge.toml meter-week.csv --json
""")


def register(sub: Subcommands) -> None:
    p = sub.add_parser("replay", help=_("run the rules over a recorded trace and print the alarms they raise"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("trace", metavar="TRACE.csv", help=_("CSV with the header ts,sensor,quantity,value[,quality]"))
    p.add_argument("--json", action="store_true", help=_("one JSON object per alarm transition"))
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from edge.replay import TextTable, TraceReplay, json_line

    config = load_config(config_path(args))
    zone = zoneinfo.ZoneInfo(config.gateway.timezone)
    table = None if args.json else TextTable(config.rules, zone)
    replayed = TraceReplay(config, args.trace)
    # Each line is flushed as it is made: a long trace shows its first alarms at once, and nothing piles up.
    for transition in replayed:
        if table is None:
            render.out(json_line(transition, zone), flush=True)
            continue
        if replayed.transitions == 1:
            render.out(table.header)
        render.out(table.line(transition), flush=True)
    for sensor, quantity in replayed.unwatched:
        render.warn(_("no rule watches {quantity} of sensor {sensor} in the trace").format(
            quantity=quantity, sensor=sensor))
    if replayed.more_unwatched:
        render.warn(_("more sensors in the trace that no rule watches; only the first {count} are named").format(
            count=len(replayed.unwatched)))
    if table is not None:
        render.out(ngettext("{rows} reading replayed, {count} alarm transitions",
                            "{rows} readings replayed, {count} alarm transitions", replayed.rows).format(
            rows=replayed.rows, count=replayed.transitions))
    return EX_OK
