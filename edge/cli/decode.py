"""``linli decode PROTOCOL HEX…``: a frame pasted from a serial sniffer, field by field."""

from __future__ import annotations

import argparse

from edge.cli import render
from edge.cli.common import Subcommands, add_json_option
from edge.exits import EX_OK
from edge.i18n import _


def register(sub: Subcommands) -> None:
    p = sub.add_parser("decode", help=_("decode a frame pasted from a serial sniffer"),
                       epilog=_("examples:\n  linli decode mbus 10 5B 01 5C 16\n"
                                "  linli decode modbus 01 03 00 02 00 03 A4 0B --json\n"
                                "exit status 0 when decoded, 65 for a bad frame"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", choices=("mbus", "cjt188", "modbus", "mr60bha1", "mr60bha2"))
    p.add_argument("hex", nargs="+", metavar="HEX", help=_("the frame's bytes in hex; spaces allowed"))
    add_json_option(p)
    p.set_defaults(func=cmd_decode)


def cmd_decode(args: argparse.Namespace) -> int:
    from edge.decode import BadFrame, decode, rows

    try:
        decoded = decode(args.protocol, " ".join(args.hex))
    except BadFrame as exc:
        if args.json:
            render.emit_json({"error": str(exc), "offset": exc.offset}, ascii_only=True)
        else:
            render.error(f"{exc}{at_byte(exc.offset)}", label=_("bad frame"))
        return exc.exit_code
    if args.json:
        render.emit_json(decoded)
    else:
        render.out(render.table(rows(decoded)))
    return EX_OK


def at_byte(offset: int | None) -> str:
    """`` (at byte 5)`` after an error message that knows where in the frame it is, else nothing."""
    return "" if offset is None else _(" (at byte {offset})").format(offset=offset)
