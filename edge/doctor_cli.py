"""The ``linli doctor`` command: the checklist of :mod:`edge.doctor` as a table, or as JSON for a script.

Imported by ``edge/cli.py`` to build the parser; the checks load only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from edge.i18n import _

EX_OK, EX_FAILED = 0, 1

EPILOG = _("""Checks, each PASS, WARN or FAIL with what to do: the config; every bus (a serial port
present, openable, held by no other process; the I2C bus; the GPIO pin factory); one
request to every device; the broker with the configured TLS and credentials; the client
certificate's expiry; the clock; free disk and the outbox. When the agent runs, buses
and devices are judged from its own health and nothing is opened a second time.
Exit status 0 when nothing failed, 1 when something did.
examples:
  linli doctor
  linli doctor --config /etc/linli/edge.toml --json
""")

#: Status → (the word shown, its ANSI colour).
_STATUS = {"pass": (lambda: _("PASS"), "32"), "warn": (lambda: _("WARN"), "33"), "fail": (lambda: _("FAIL"), "31")}


def add_command(sub: Any, add_config_option: Callable[[argparse.ArgumentParser], None],
                handler: Callable[[argparse.Namespace], int]) -> None:
    """Add ``doctor`` to the ``linli`` subcommands ``sub``, run by ``handler`` (which calls :func:`run`)."""
    p = sub.add_parser("doctor", help=_("check the gateway end to end and say what to fix"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("--json", action="store_true", help=_("print the checks as JSON"))
    p.set_defaults(func=handler)


def run(args: argparse.Namespace, config_path: str) -> int:
    """Run every check on the config at ``config_path``; print them; 1 when one failed."""
    from edge.doctor import FAIL, diagnose

    checks = diagnose(config_path)
    if args.json:
        print(json.dumps({"checks": checks}, ensure_ascii=False))
    else:
        print_table(checks, sys.stdout)
    return EX_FAILED if any(line["status"] == FAIL for line in checks) else EX_OK


def print_table(checks: list[dict[str, str]], stream: TextIO) -> None:
    """One row per check (status, check, detail), the fix under a row that has one, then the count."""
    from edge.replay import display_width   # Chinese words take two columns each

    colour = stream.isatty() and "NO_COLOR" not in os.environ
    words = {status: word() for status, (word, _code) in _STATUS.items()}
    status_width = max(display_width(word) for word in [*words.values(), _("status")])
    check_width = max([display_width(_("check"))] + [len(line["check"]) for line in checks])

    def cell(text: str, width: int) -> str:
        return text + " " * (width - display_width(text))

    print(cell(_("status"), status_width) + "  " + cell(_("check"), check_width) + "  " + _("detail"), file=stream)
    for line in checks:
        word = cell(words[line["status"]], status_width)
        if colour:
            word = f"\033[{_STATUS[line['status']][1]}m{word}\033[0m"
        print(word + "  " + cell(line["check"], check_width) + "  " + line["detail"], file=stream)
        if line["fix"]:
            print(" " * (status_width + check_width + 4) + _("fix: {fix}").format(fix=line["fix"]), file=stream)
    counts = {status: sum(1 for line in checks if line["status"] == status) for status in _STATUS}
    print(_("{fail} failed, {warn} warnings, {passed} passed").format(
        fail=counts["fail"], warn=counts["warn"], passed=counts["pass"]), file=stream)
