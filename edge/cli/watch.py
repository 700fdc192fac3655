"""``linli watch``: the running agent's live view (:mod:`edge.watch`): a screen, plain lines or JSON."""

from __future__ import annotations

import argparse
import sys
import time

from edge.cli import render
from edge.cli.common import CommandRefused, Subcommands, add_config_option, add_json_option, config_path
from edge.exits import EX_OK
from edge.i18n import _

EPILOG = _("""On a terminal the screen is redrawn in place (q or Ctrl-C quits); otherwise one line is
printed per change: a new value or quality, an alarm raised or gone, the broker link up or down.
Exit status 0, 69 when no agent answers, 78 for a bad config.
examples:
  linli watch
  linli watch --json --for 30
""")


def register(sub: Subcommands) -> None:
    p = sub.add_parser("watch", help=_("live view of the running agent: sensors, alarms, link, outbox"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    add_json_option(p, _("one JSON object per change, for scripts"))
    p.add_argument("--for", dest="seconds", type=float, metavar="SECONDS", help=_("stop after this long"))
    p.set_defaults(func=cmd_watch)


def cmd_watch(args: argparse.Namespace) -> int:
    """Watch the agent of the configuration until q, Ctrl-C or ``--for``."""
    from edge.config import load_config
    from edge.watch import asker, follow, line, screen

    ask = asker(load_config(config_path(args)).control.socket, CommandRefused)
    deadline = None if args.seconds is None else time.monotonic() + args.seconds

    def until() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    try:
        if args.json:
            follow(ask, lambda event: render.emit_json(event, flush=True), until=until)
        elif sys.stdout.isatty():
            screen(ask, until=until, colour=render.colour_wanted(sys.stdout))
        else:
            follow(ask, lambda event: render.out(line(event), flush=True), until=until)
    except KeyboardInterrupt:
        pass   # how a person leaves the view: not a failure
    return EX_OK
