"""``linli logs [-f] [-n N]``: the agent's journal, ``journalctl -u linli-edge``, for a technician on SSH.

Gateways run the agent under systemd (systemd/linli-edge.service), which keeps its log in
the journal; this only spares the technician the unit's name and the options. Without
journalctl, or when systemd does not know the unit, it says so and exits 69.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess

from edge.cli.common import Subcommands
from edge.errors import LinliError
from edge.exits import EX_OK, EX_UNAVAILABLE
from edge.i18n import _

UNIT = "linli-edge"

EPILOG = _("""examples:
  linli logs            the last 50 lines of the agent's journal
  linli logs -f -n 10   the last 10, then new lines as they come (Ctrl-C stops)
exit status journalctl's own, 69 when journalctl is missing or the unit is not installed
""")


class JournalUnavailable(LinliError):
    """No journal to show: journalctl missing, or systemd does not know the unit."""

    exit_code = EX_UNAVAILABLE


def register(sub: Subcommands) -> None:
    p = sub.add_parser("logs", help=_("the agent's journal (journalctl -u linli-edge)"), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--follow", action="store_true", help=_("keep showing new lines"))
    p.add_argument("-n", "--lines", type=int, default=50, metavar="N",
                   help=_("how many of the last lines (default: %(default)s)"))
    p.set_defaults(func=cmd_logs)


def cmd_logs(args: argparse.Namespace) -> int:
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise JournalUnavailable(_("journalctl is not installed: this machine keeps no systemd journal; "
                                   "the agent's log is where linli run writes it (its standard error)"))
    _check_unit_known()
    argv = [journalctl, "--unit", UNIT, "--lines", str(max(args.lines, 0)), "--no-pager"]
    if args.follow:
        argv.append("--follow")
    try:
        return subprocess.run(argv, check=False).returncode
    except KeyboardInterrupt:   # how -f is left
        return EX_OK


def _check_unit_known() -> None:
    """Systemd's word on the unit, when systemctl is there to ask; no word is no refusal."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return
    try:
        found = subprocess.run([systemctl, "show", "--property=LoadState", "--value", f"{UNIT}.service"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return
    if found == "not-found":
        raise JournalUnavailable(_("the unit {unit} is not installed on this machine "
                                   "(sudo deploy/install.sh installs it)").format(unit=UNIT))
