"""``linli update``: install a release beside the running one, switch, judge, switch back if unhealthy.

On the gateway as root: ``sudo linli update linli-edge-0.2.0.tar.gz``. ``linli update --requested``
is what ``linli-update.service`` runs when the agent was asked over MQTT (``cmd/update``). The
work is :mod:`edge.update.updater`; decision 0010 says why it is done this way.
"""

from __future__ import annotations

import argparse
import datetime
import os
from typing import Any

from edge.cli import render
from edge.cli.common import Subcommands, add_config_option, add_json_option, config_path
from edge.errors import ConfigError, LinliError
from edge.exits import EX_NOPERM, EX_OK, EX_REFUSED
from edge.i18n import _

EPILOG = _("""The package is a wheel (pip wheel --no-deps -w dist .) or a bundle of wheels that installs
without network (pip wheel -w wheelhouse . && tar -czf linli-edge.tar.gz -C wheelhouse .).
It is installed under /opt/linli/releases/, made current, and the agent restarted; unless it
is healthy within the deadline (every bus open, every sensor read, the broker link back) the
previous release is made current again. Needs root.
examples:
  sudo linli update linli-edge-0.2.0.tar.gz
  sudo linli update --deadline 120 --json dist/linli_edge-0.2.0-py3-none-any.whl
exit status 0 when updated (or already running that release), 1 when refused or switched back,
65 when the file is not a release, 77 when not run as root""")


class NotRoot(LinliError):
    exit_code = EX_NOPERM


def register(sub: Subcommands) -> None:
    p = sub.add_parser("update", help=_("install a new release, switched back automatically if unhealthy"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("package", nargs="?", metavar="PACKAGE-FILE", help=_("the wheel or bundle to install"))
    p.add_argument("--sha256", help=_("refuse the file unless it has this sha256"))
    p.add_argument("--deadline", type=float, default=60.0, metavar="SECONDS",
                   help=_("how long the new release has to prove healthy (default: %(default)s)"))
    p.add_argument("--requested", action="store_true",
                   help=_("carry out the update the agent was asked for (what linli-update.service runs)"))
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=cmd_update)


def cmd_update(args: argparse.Namespace) -> int:
    from edge.update.handoff import Request, now_iso
    from edge.update.package import Package

    if (args.package is None) == (not args.requested):
        raise LinliError(_("name a PACKAGE-FILE, or give --requested"))
    if os.geteuid() != 0:
        raise NotRoot(_("updating needs root: sudo linli update {file}").format(file=args.package or "--requested"))
    try:
        updater = _updater(args, config_path(args))
    except ConfigError as exc:
        if args.requested:   # answer the agent now: left waiting, the request would start this again and again
            _refuse_requested(f"the updater cannot read the configuration: {exc}")
        raise
    if args.requested:
        outcome = updater.requested()
        if outcome is None:
            render.note(_("no update was asked for"))
            return EX_OK
    else:
        package = Package.open(args.package, args.sha256)   # a file that is no release: exit 65 before anything
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        outcome = updater.update(Request(f"local-{stamp}", str(package.path.resolve()), package.sha256,
                                         args.deadline, "local", now_iso()))
    _show(outcome, args.json)
    return EX_OK if outcome.ok else EX_REFUSED


def _updater(args: argparse.Namespace, path: str):
    from edge.config import load_config
    from edge.managed_config import ManagedConfig, state_folder
    from edge.update.handoff import Handoff, update_folder
    from edge.update.releases import Releases
    from edge.update.service import AgentService
    from edge.update.updater import Updater

    installed = load_config(path)
    _text, running = ManagedConfig(path, state_folder(installed)).current()
    say = (lambda _line: None) if args.json else (lambda line: render.note("… " + line))
    return Updater(Releases(), Handoff(update_folder(running.buffer.path)), AgentService(running.control.socket),
                   path, say)


def _refuse_requested(reason: str) -> None:
    from edge.update.handoff import Handoff, update_folder
    from edge.update.releases import Releases
    from edge.update.service import AgentService
    from edge.update.updater import Updater

    Updater(Releases(), Handoff(update_folder(None)), AgentService(""), "").refuse_requested(reason)


def _show(outcome: Any, as_json: bool) -> None:
    shown = {"id": outcome.id, "outcome": outcome.outcome, "ok": outcome.ok, "from": outcome.was,
             "to": outcome.to, "reason": outcome.reason, "steps": outcome.steps}
    if as_json:
        render.emit_json(shown)
        return
    was = (outcome.was or {}).get("version", "-")
    to = (outcome.to or {}).get("version", "-")
    if outcome.ok:
        render.out(render.paint(_("updated"), render.GREEN) + "  " + _("{was} -> {to}").format(was=was, to=to)
                   if outcome.outcome == "updated" else _("already running {to}").format(to=to))
    else:
        render.out(render.paint(outcome.outcome.replace("_", " "), render.RED) + "  " + (outcome.reason or ""))
