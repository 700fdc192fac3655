"""``linli alarm list`` and ``linli alarm test``: the raised alarms, and a test alarm through the whole path.

Both ask the running agent over the control socket (commands ``alarms`` and ``alarm_test``);
the test alarm itself is :mod:`edge.alarm_drill`. Added to ``linli alarm`` beside ``ack``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

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

Ask = Callable[[str, dict], dict]


def add_commands(alarm_sub: Any, add_config_option: Callable[[argparse.ArgumentParser], None],
                 list_handler: Callable[[argparse.Namespace], int],
                 test_handler: Callable[[argparse.Namespace], int]) -> None:
    """Add ``list`` and ``test`` to the ``linli alarm`` subcommands ``alarm_sub``."""
    a = alarm_sub.add_parser("list", help=_("the alarms raised now"), epilog=LIST_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(a)
    a.add_argument("--json", action="store_true", help=_("machine-readable output"))
    a.set_defaults(func=list_handler)
    a = alarm_sub.add_parser("test", help=_("raise a test alarm through the whole path and clear it"),
                             epilog=TEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(a)
    a.add_argument("--for", dest="seconds", type=float, default=10.0, metavar="SECONDS",
                   help=_("clear it after this long (default: %(default)s)"))
    a.add_argument("--json", action="store_true", help=_("machine-readable output"))
    a.set_defaults(func=test_handler)


def run_list(args: argparse.Namespace, ask: Ask) -> int:
    result = ask("alarms", {})
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    elif not result["alarms"]:
        print(_("no alarm is raised"))
    for alarm in [] if args.json else result["alarms"]:
        state = _("acknowledged") if alarm["acknowledged"] else _("raised")
        print(f"{alarm['alarm']}  {alarm['severity']}  {state}")
    return 0


def run_test(args: argparse.Namespace, ask: Ask) -> int:
    result = ask("alarm_test", {"seconds": args.seconds})
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    elif result["raised"]:
        print(_("{alarm} raised; it clears in {seconds:g} s").format(alarm=result["alarm"],
                                                                     seconds=result["clears_in_s"]))
    else:
        print(_("{alarm} was already raised; it now clears in {seconds:g} s").format(
            alarm=result["alarm"], seconds=result["clears_in_s"]))
    return 0
