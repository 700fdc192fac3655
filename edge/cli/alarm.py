"""``linli alarm …``: the alarm tools. Each subcommand is one ``add_…(alarm_sub)`` in :data:`SUBCOMMANDS`."""

from __future__ import annotations

import argparse

from edge import alarm_cli
from edge.cli import render
from edge.cli.common import Subcommands, add_config_option, add_json_option, ask_agent, subcommands
from edge.exits import EX_OK
from edge.i18n import _


def add_ack(alarm_sub: Subcommands) -> None:
    a = alarm_sub.add_parser("ack", help=_("acknowledge an alarm (silences a latched one)"),
                             epilog=_("example: linli alarm ack pump-pressure/low"))
    a.add_argument("alarm", metavar="SENSOR/RULE")
    add_config_option(a)
    add_json_option(a)
    a.set_defaults(func=cmd_alarm_ack)


def cmd_alarm_ack(args: argparse.Namespace) -> int:
    result = ask_agent(args, "alarm_ack", {"alarm": args.alarm})
    if args.json:
        render.emit_json(result, ascii_only=True)
    else:
        states = ", ".join(result["states"]) or _("nothing to acknowledge")
        render.out(f"{args.alarm}: {states}")
    return EX_OK


def add_list_and_test(alarm_sub: Subcommands) -> None:
    alarm_cli.add_commands(alarm_sub, add_config_option,
                           lambda args: alarm_cli.run_list(args, lambda name, request: ask_agent(args, name, request)),
                           lambda args: alarm_cli.run_test(args, lambda name, request: ask_agent(args, name, request)))


#: The ``linli alarm`` subcommands, in the order the help lists them.
SUBCOMMANDS = (add_ack, add_list_and_test)


def register(sub: Subcommands) -> None:
    p = sub.add_parser("alarm", help=_("alarm tools"))
    alarm_sub = subcommands(p, "alarm_command")
    for add in SUBCOMMANDS:
        add(alarm_sub)
