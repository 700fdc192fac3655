"""``linli alarm …``: the alarm tools. Each subcommand is one ``add_…(alarm_sub)`` in :data:`SUBCOMMANDS`.

All of them ask the running agent over the control socket (``alarm_ack``, ``alarms``, ``alarm_test``);
the test alarm itself is :mod:`edge.alarm_drill`.
"""

from __future__ import annotations

import argparse

from edge.cli import render
from edge.cli.common import Subcommands, add_config_option, add_json_option, ask_agent, subcommands
from edge.exits import EX_OK
from edge.i18n import _

LIST_EPILOG = _("""Every alarm raised now, acknowledged or not, the test alarm too.
examples:
  linli alarm list
  linli alarm list --json
""")
TEST_EPILOG = _("""Raises the alarm gateway/test (severity info, rule test, its message says it is a test):
stored in the outbox, published to the broker like any alarm, offered to the local outputs
(an output sounds for it when its on patterns match it and its min_severity is info).
It is cleared after --for seconds (default 10).
examples:
  linli alarm test
  linli alarm test --for 30 --json
""")


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


def add_list(alarm_sub: Subcommands) -> None:
    a = alarm_sub.add_parser("list", help=_("the alarms raised now"), epilog=LIST_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(a)
    add_json_option(a)
    a.set_defaults(func=cmd_alarm_list)


def cmd_alarm_list(args: argparse.Namespace) -> int:
    result = ask_agent(args, "alarms", {})
    if args.json:
        render.emit_json(result)
        return EX_OK
    if not result["alarms"]:
        render.out(_("no alarm is raised"))
    for alarm in result["alarms"]:
        state = _("acknowledged") if alarm["acknowledged"] else _("raised")
        render.out(f"{alarm['alarm']}  {alarm['severity']}  {state}")
    return EX_OK


def add_test(alarm_sub: Subcommands) -> None:
    a = alarm_sub.add_parser("test", help=_("raise a test alarm through the whole path and clear it"),
                             epilog=TEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(a)
    a.add_argument("--for", dest="seconds", type=float, default=10.0, metavar="SECONDS",
                   help=_("clear it after this long (default: %(default)s)"))
    add_json_option(a)
    a.set_defaults(func=cmd_alarm_test)


def cmd_alarm_test(args: argparse.Namespace) -> int:
    result = ask_agent(args, "alarm_test", {"seconds": args.seconds})
    if args.json:
        render.emit_json(result)
    elif result["raised"]:
        render.out(_("{alarm} raised; it clears in {seconds:g} s").format(alarm=result["alarm"],
                                                                          seconds=result["clears_in_s"]))
    else:
        render.out(_("{alarm} was already raised; it now clears in {seconds:g} s").format(
            alarm=result["alarm"], seconds=result["clears_in_s"]))
    return EX_OK


#: The ``linli alarm`` subcommands, in the order the help lists them.
SUBCOMMANDS = (add_ack, add_list, add_test)


def register(sub: Subcommands) -> None:
    p = sub.add_parser("alarm", help=_("alarm tools"))
    alarm_sub = subcommands(p, "alarm_command")
    for add in SUBCOMMANDS:
        add(alarm_sub)
