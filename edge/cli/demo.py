"""``linli demo``: simulated devices -> the agent -> a local MQTT broker, shown live."""

from __future__ import annotations

import argparse
import sys

from edge.cli import render
from edge.cli.common import Subcommands, setup_logging
from edge.i18n import _


def register(sub: Subcommands) -> None:
    p = sub.add_parser("demo", help=_("simulated devices -> agent -> local MQTT broker, shown live"),
                       epilog=_("example: linli demo --for 60 --gateway-id gw-demo"))
    p.add_argument("--broker", metavar="HOST:PORT", help=_("use this broker instead of starting one"))
    p.add_argument("--for", dest="seconds", type=float, metavar="SECONDS", help=_("stop cleanly after this long"))
    p.add_argument("--gateway-id", default="gw-demo", help=_("gateway id (default: %(default)s)"))
    p.add_argument("--json", action="store_true", help=_("print each MQTT message as one JSON line"))
    p.add_argument("--lines", action="store_true",
                   help=_("print each MQTT message as a line instead of the live view a terminal gets"))
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    setup_logging(args.verbose)
    return run_demo(broker=args.broker, seconds=args.seconds, gateway_id=args.gateway_id, as_json=args.json,
                    lines=args.lines, colour=render.colour_wanted(sys.stdout))
