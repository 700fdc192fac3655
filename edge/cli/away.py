"""``linli away on|off``: the resident is away, so the rules marked suppress_when_away stay quiet."""

from __future__ import annotations

import argparse

from edge.cli import render
from edge.cli.common import CommandRefused, Subcommands, add_config_option, add_json_option, ask_agent
from edge.exits import EX_OK
from edge.i18n import _


def register(sub: Subcommands) -> None:
    p = sub.add_parser("away", help=_("the resident is away: quiet the rules marked suppress_when_away"),
                       epilog=_("examples:\n  linli away on --until 2026-12-01T18:00\n  linli away off"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("state", choices=("on", "off"))
    add_config_option(p)
    p.add_argument("--until", metavar="TIME", help=_("ISO 8601 time, local to the gateway without an offset"))
    add_json_option(p)
    p.set_defaults(func=cmd_away)


def cmd_away(args: argparse.Namespace) -> int:
    until = args.until if args.state == "on" else None
    if args.state == "on" and until is None:
        raise CommandRefused(_("away on needs --until, e.g. --until 2026-12-01T18:00"))
    result = ask_agent(args, "away", {"until": until})
    if args.json:
        render.emit_json(result, ascii_only=True)
    elif result["away"]:
        render.out(_("away until {until}: rules marked suppress_when_away are quiet").format(until=until))
    else:
        render.out(_("back home: every rule is active again"))
    return EX_OK
