"""``linli audit``: the central side's check of the delivery promise, one row per gateway heard (docs/audit.md).

Subscribes to a topic filter for ``--for`` seconds (or until Ctrl-C), then prints what the
:class:`~edge.audit.ledger.Ledger` found. Exit 1 when any gateway has a gap no record explains,
69 when the broker cannot be reached.
"""

from __future__ import annotations

import argparse
import datetime
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.cli import render
from edge.cli.common import Subcommands, add_json_option, setup_logging
from edge.errors import LinliError
from edge.exits import EX_FAILED, EX_NOINPUT, EX_OK, EX_USAGE
from edge.i18n import _, ngettext

EPILOG = _("""examples:
  linli audit --broker 127.0.0.1:1883 --for 60
  linli audit --broker mqtt.example.org:8883 --tls-ca ca.crt --cert audit.crt --key audit.key --prefix 'linli/shimen2/#'
  linli audit --broker 127.0.0.1:1883 --client-id audit-1 --persistent --from-start --json
Exit status: 0 every gap explained, 1 a gap no record explains, 69 the broker cannot be reached.
""")


class PasswordFileUnreadable(LinliError):
    exit_code = EX_NOINPUT


class OptionsDisagree(LinliError):
    """Options that make no sense together (exit 64, as argparse's own usage errors)."""

    exit_code = EX_USAGE


def register(sub: Subcommands) -> None:
    p = sub.add_parser("audit", help=_("check the delivery promise as the central side sees it, per gateway"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", required=True, type=host_port, metavar="HOST:PORT", help=_("the broker to subscribe at"))
    p.add_argument("--tls-ca", metavar="FILE", help=_("connect with TLS, checking the broker against this CA"))
    p.add_argument("--cert", metavar="FILE", help=_("client certificate for TLS (with --key)"))
    p.add_argument("--key", metavar="FILE", help=_("private key of the client certificate"))
    p.add_argument("--username", metavar="USER", help=_("MQTT user name"))
    p.add_argument("--password-file", metavar="FILE", help=_("file holding the MQTT password (first line)"))
    p.add_argument("--prefix", default="linli/#", metavar="FILTER",
                   help=_("topic filter to subscribe to (default: %(default)s)"))
    p.add_argument("--for", dest="seconds", type=float, metavar="SECONDS",
                   help=_("stop after this long (default: at Ctrl-C)"))
    p.add_argument("--client-id", metavar="ID", help=_("MQTT client id (default: a new one each run)"))
    p.add_argument("--persistent", action="store_true",
                   help=_("ask the broker to keep the session of --client-id, so a later run misses nothing"))
    p.add_argument("--from-start", action="store_true",
                   help=_("count gaps from seq 1, not from the lowest seq seen of each gateway"))
    add_json_option(p, _("print the report as one JSON object"))
    p.set_defaults(func=cmd_audit)


def host_port(text: str) -> tuple[str, int]:
    host, _sep, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(_('expects HOST:PORT, got "{text}"').format(text=text))
    return host, int(port)


def cmd_audit(args: argparse.Namespace) -> int:
    from edge.audit.ledger import Ledger
    from edge.audit.listener import Auditor, Tls

    if (args.cert is None) != (args.key is None):
        raise OptionsDisagree(_("--cert and --key go together"))
    if args.persistent and not args.client_id:
        raise OptionsDisagree(_("--persistent needs --client-id"))
    setup_logging(args.verbose)
    tls = Tls(args.tls_ca, args.cert, args.key) if args.tls_ca or args.cert else None
    host, port = args.broker
    auditor = Auditor(host, port, topic_filter=args.prefix, tls=tls, username=args.username,
                      password=_password(args.password_file), client_id=args.client_id, persistent=args.persistent,
                      ledger=Ledger(from_start=args.from_start))
    with auditor, _stop_on_signals() as stop:
        _watch(auditor, args.seconds, stop)
    report = auditor.report()
    if args.json:
        render.emit_json(report)
    else:
        for text in lines(report):
            render.out(text)
    return EX_FAILED if report["unexplained"] else EX_OK


def _password(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PasswordFileUnreadable(_("cannot read a password from {path}: {error}").format(
            path=path, error=exc)) from None
    if not text.strip():
        raise PasswordFileUnreadable(_("{path} holds no password").format(path=path))
    return text.splitlines()[0]


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C and SIGTERM end the audit in order (the report is still printed)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, lambda _signum, _frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(auditor: Any, seconds: float | None, stop: threading.Event) -> None:
    """Wait for the end, redrawing a progress line on a terminal: messages per second and gateways heard."""
    progress = render.Progress()
    started = time.monotonic()
    end = None if seconds is None else started + seconds
    last_count, last_time = 0, started
    while True:
        now = time.monotonic()
        if end is not None and now >= end:
            break
        if progress.shown:
            count = auditor.received
            progress.show(_("{rate:.0f} messages/s, {gateways} gateways, {elapsed:.0f} s").format(
                rate=(count - last_count) / max(now - last_time, 1e-3), gateways=auditor.gateways(),
                elapsed=now - started))
            last_count, last_time = count, now
        if stop.wait(1.0 if end is None else min(1.0, end - now)):
            break
    progress.clear()


def lines(report: dict[str, Any]) -> list[str]:
    """The report as a table, one row per gateway, then the verdict."""
    header = [_("gateway"), _("records"), _("seqs"), _("unexplained"), _("dups"), _("status"), _("outbox"),
              _("clock"), _("alarms raised")]
    rows = [header] + [_row(gateway) for gateway in report["gateways"]]
    shown = render.table(rows, right=(1, 3, 4, 6)).splitlines() if report["gateways"] else []
    for gateway in report["gateways"]:
        if gateway["unexplained_gaps"]:
            gaps = ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in gateway["unexplained_gaps"][:10])
            shown.append(render.paint(_("{base}: seqs missing without explanation: {gaps}").format(
                base=gateway["base"], gaps=gaps), render.RED))
    if report["unexplained"]:
        count = report["unexplained"]
        shown.append(ngettext("{count} seq missing without explanation", "{count} seqs missing without explanation",
                              count).format(count=count))
    else:
        count = len(report["gateways"])
        shown.append(ngettext("{count} gateway heard, no unexplained gap", "{count} gateways heard, no unexplained gap",
                              count).format(count=count))
    return shown


def _row(gateway: dict[str, Any]) -> list[render.Cell]:
    status, health = gateway["status"], gateway["health"] or {}
    seqs = "-" if gateway["seq_first"] is None else f"{gateway['seq_first']}..{gateway['seq_last']}"
    unexplained = render.Painted(str(gateway["unexplained"]), render.RED if gateway["unexplained"] else render.GREEN)
    if status is None:
        state = "-"
    else:
        since = "" if status["since_ms"] is None else " " + _moment(status["since_ms"])
        shown = {"online": _("online"), "offline": _("offline")}.get(status["state"], status["state"])
        state = render.Painted(shown + since, render.GREEN if status["state"] == "online" else render.RED)
    depth = health.get("outbox_depth")
    synced = health.get("clock_synced")
    clock = "-" if synced is None else _("synced") if synced else render.Painted(_("not synced"), render.YELLOW)
    return [gateway["base"], str(gateway["records"]), seqs, unexplained, str(gateway["duplicates"]), state,
            "-" if depth is None else str(depth), clock, ", ".join(gateway["alarms_raised"]) or "-"]


def _moment(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")
