"""``linli scan mbus|cjt188``: find the meters on a serial line.

What is done is :mod:`edge.probe.scan`; this module shows it, a row per meter as it is found.
"""

from __future__ import annotations

import argparse
import time

from drivers.transports.serial import STANDARD_BAUDRATES
from edge.cli import render
from edge.cli.common import Subcommands, add_json_option, seconds, subcommands
from edge.cli.probe import show_suspects
from edge.exits import EX_DATAERR, EX_INTERRUPTED, EX_OK, EX_UNAVAILABLE
from edge.i18n import _, ngettext

MBUS_EPILOG = _("""SND_NKE to each address in turn; where a meter acknowledges, REQ_UD2 names it
(id, manufacturer, medium). A garbled answer is shown as a collision: two meters
share that address (or the line is noisy). Ctrl-C prints what was found so far.
example: linli scan mbus /dev/ttyUSB0 --from 1 --to 20
exit status 0 when a meter was found, 65 only collisions, 69 none, 74 the port failed, 130 interrupted
""")

CJT188_EPILOG = _("""Every meter answers a broadcast, so connect only ONE meter: with two or more the
answers collide.
example: linli scan cjt188 /dev/ttyUSB0 --json
exit status 0 found, 65 a garbled answer, 69 no answer, 74 the port failed
""")

#: Columns of the M-Bus table: address, id, maker, medium; the version follows unpadded.
_MBUS_WIDTHS = (9, 10, 7, 12)
#: Width of the label column of the CJ/T 188 answer.
_LABEL = 12


def register(sub: Subcommands) -> None:
    p = sub.add_parser("scan", help=_("find the meters on a serial line"))
    scan_sub = subcommands(p, "scan_command")
    c = scan_sub.add_parser("mbus", help=_("find M-Bus primary addresses (SND_NKE to each, REQ_UD2 where one answers)"),
                            epilog=MBUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("port", metavar="PORT", help=_("serial device, e.g. /dev/ttyUSB0"))
    c.add_argument("--from", dest="first", type=int, default=0, metavar="ADDRESS",
                   help=_("first address (default: %(default)s, where new meters usually sit)"))
    c.add_argument("--to", dest="last", type=int, default=250, metavar="ADDRESS",
                   help=_("last address (default: %(default)s)"))
    c.add_argument("--baudrate", type=int, choices=STANDARD_BAUDRATES, default=2400, metavar="B",
                   help=_("line speed (default: %(default)s)"))
    c.add_argument("--parity", choices=("N", "E", "O"), default="E", help=_("default: %(default)s"))
    c.add_argument("--timeout", type=seconds, metavar="SECONDS",
                   help=_("wait per address (default: what EN 13757-2 allows at the baud rate, 0.24 s at 2400)"))
    add_json_option(c)
    c.set_defaults(func=cmd_scan_mbus)
    c = scan_sub.add_parser("cjt188", help=_("read the address of the one CJ/T 188 meter connected, by broadcast"),
                            epilog=CJT188_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("port", metavar="PORT", help=_("serial device, e.g. /dev/ttyUSB0"))
    c.add_argument("--di-order", choices=("2004", "2018", "auto"), default="auto",
                   help=_("edition to ask in; auto tries 2004, then 2018 (default: %(default)s)"))
    c.add_argument("--baudrate", type=int, choices=STANDARD_BAUDRATES, default=2400, metavar="B",
                   help=_("line speed (default: %(default)s)"))
    c.add_argument("--parity", choices=("N", "E", "O"), default="E", help=_("default: %(default)s"))
    c.add_argument("--timeout", type=seconds, default=1.0, metavar="SECONDS",
                   help=_("how long to wait for the first answer byte (default: %(default)s)"))
    add_json_option(c)
    c.set_defaults(func=cmd_scan_cjt188)


def cmd_scan_mbus(args: argparse.Namespace) -> int:
    from edge.probe.scan import mbus_answer_timeout, scan_mbus, scan_range
    from edge.probe.tap import open_bus

    addresses = scan_range(args.first, args.last)
    timeout = args.timeout or mbus_answer_timeout(args.baudrate)
    bus = open_bus(args.port, "mbus", args.baudrate, args.parity, timeout)
    progress = render.Progress()
    found, collisions, scanned, interrupted = [], [], 0, False
    started = time.monotonic()
    if not args.json:
        render.out(render.line([_("address"), _("id"), _("maker"), _("medium"), _("version")], _MBUS_WIDTHS, sep=""))
    try:
        for result in scan_mbus(bus, addresses):
            scanned += 1
            progress.show(_("scanning address {address} ({done} of {total})").format(
                address=result.address, done=scanned, total=len(addresses)))
            if result.state == "silent":
                continue
            (found if result.state == "found" else collisions).append(result)
            if args.json:
                continue
            progress.clear()
            if result.state == "found":
                render.out(render.line([str(result.address), result.id or "-", result.manufacturer or "-",
                                        result.medium or "-", "-" if result.version is None else str(result.version)],
                                       _MBUS_WIDTHS, sep="") + (f"  {result.error}" if result.error else ""))
            else:
                render.out(render.pad(str(result.address), _MBUS_WIDTHS[0])
                           + render.paint(_("collision"), render.YELLOW) + f": {result.error}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.clear()
    elapsed = round(time.monotonic() - started, 1)
    if args.json:
        render.emit_json({"port": args.port, "from": args.first, "to": args.last, "scanned": scanned,
                          "found": [r.as_json() for r in found], "collisions": [r.as_json() for r in collisions],
                          "elapsed_s": elapsed, "interrupted": interrupted})
    else:
        if interrupted:
            render.out(_("interrupted after {scanned} of {total} addresses").format(
                scanned=scanned, total=len(addresses)))
        render.out(ngettext("{count} meter found in {seconds} s (addresses {first}–{last})",
                            "{count} meters found in {seconds} s (addresses {first}–{last})", len(found)).format(
            count=len(found), seconds=elapsed, first=args.first, last=args.last))
    if interrupted:
        return EX_INTERRUPTED
    return EX_OK if found else EX_DATAERR if collisions else EX_UNAVAILABLE


def cmd_scan_cjt188(args: argparse.Namespace) -> int:
    from edge.probe.scan import scan_cjt188
    from edge.probe.tap import open_bus

    result = scan_cjt188(open_bus(args.port, "cjt188", args.baudrate, args.parity, args.timeout), args.di_order)
    if args.json:
        render.emit_json(result.as_json())
        return result.exit_code
    if result.error is None:
        for label, value in ((_("address"), result.address), (_("meter type"), result.meter_type),
                             (_("edition"), result.di_order)):
            render.out(render.pad(label, _LABEL) + f"{value}")
    else:
        render.error(result.error)
        show_suspects(result.suspects)
    return result.exit_code
