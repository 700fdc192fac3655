"""``linli doctor``: the checklist of :mod:`edge.doctor` as a table, or as JSON for a script.

The checks themselves are :mod:`edge.doctor` and its ``doctor_*`` modules; they load only when the command runs.
"""

from __future__ import annotations

import argparse

from edge.cli import render
from edge.cli.common import Subcommands, add_config_option, add_json_option, config_path
from edge.exits import EX_FAILED, EX_OK
from edge.i18n import _

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

#: Status → (the word shown, its colour).
_STATUS = {"pass": (lambda: _("PASS"), render.GREEN), "warn": (lambda: _("WARN"), render.YELLOW),
           "fail": (lambda: _("FAIL"), render.RED)}


def register(sub: Subcommands) -> None:
    p = sub.add_parser("doctor", help=_("check the gateway end to end and say what to fix"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    add_json_option(p, _("print the checks as JSON"))
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run every check on the configuration; print them; 1 when one failed."""
    from edge.doctor import FAIL, diagnose

    checks = diagnose(config_path(args))
    if args.json:
        render.emit_json({"checks": checks})
    else:
        render.out(as_table(checks))
    return EX_FAILED if any(line["status"] == FAIL for line in checks) else EX_OK


def as_table(checks: list[dict[str, str]]) -> str:
    """One row per check (status, check, detail), the fix under a row that has one, then the count."""
    words = {status: word() for status, (word, _colour) in _STATUS.items()}
    # As wide as the widest status word, used or not, so every run's table has the same shape.
    widths = [max(render.display_width(word) for word in [*words.values(), _("status")]),
              max(render.display_width(text) for text in [_("check"), *(line["check"] for line in checks)])]
    rows = [render.line([_("status"), _("check"), _("detail")], widths, sep="  ")]
    for line in checks:
        status = render.Painted(words[line["status"]], _STATUS[line["status"]][1])
        rows.append(render.line([status, line["check"], line["detail"]], widths, sep="  "))
        if line["fix"]:
            rows.append(render.line(["", "", _("fix: {fix}").format(fix=line["fix"])], widths, sep="  "))
    counts = {status: sum(1 for line in checks if line["status"] == status) for status in _STATUS}
    rows.append(_("{fail} failed, {warn} warnings, {passed} passed").format(
        fail=counts["fail"], warn=counts["warn"], passed=counts["pass"]))
    return "\n".join(rows)
