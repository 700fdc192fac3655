"""``linli probe serial``: one request on a serial port, the bytes both ways with their timing, the answer decoded.

What is done is :mod:`edge.probe.requests`; this module shows it.
"""

from __future__ import annotations

import argparse

from drivers.codecs.cjt188 import METER_TYPE_CODES
from drivers.transports.serial import STANDARD_BAUDRATES
from edge.cli import render
from edge.cli.common import Subcommands, add_json_option, seconds, subcommands
from edge.cli.decode import at_byte
from edge.i18n import _

EPILOG = _("""examples:
  linli probe serial /dev/ttyUSB0 --protocol mbus
      REQ_UD2 to address 254, which any single meter answers
  linli probe serial /dev/ttyUSB0 --protocol mbus --address 12345678
      select the meter by its secondary id, then REQ_UD2 to address 253
  linli probe serial /dev/ttyUSB0 --protocol cjt188
      read the address of the one meter connected, by broadcast
  linli probe serial /dev/ttyUSB0 --protocol cjt188 --address 00000805000001
      read that meter's water data (DI 901F)
  linli probe serial /dev/ttyUSB1 --protocol modbus --address 1 --count 7 --json
Times count from the moment the request is handed to the port, so they include
the request's own time on the wire.
exit status 0 answered and decoded, 65 a garbled answer, 69 no answer, 74 the port failed
""")

#: Width of the label column (port, sent, answer).
_LABEL = 10


def register(sub: Subcommands) -> None:
    p = sub.add_parser("probe", help=_("send one request to a device and show the bytes both ways"))
    probe_sub = subcommands(p, "probe_command")
    c = probe_sub.add_parser("serial", help=_("one request on a serial port: raw bytes, timing, decoded answer"),
                             epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("port", metavar="PORT", help=_("serial device, e.g. /dev/ttyUSB0"))
    c.add_argument("--protocol", required=True, choices=("mbus", "cjt188", "modbus"))
    c.add_argument("--address", metavar="A", help=_("M-Bus: 0–250, 254 or an 8-digit secondary id; CJ/T 188: "
                                                    "14 digits; Modbus: unit 1–247"))
    c.add_argument("--baudrate", type=int, choices=STANDARD_BAUDRATES, metavar="B",
                   help=_("line speed (default: 2400 for mbus and cjt188, 9600 for modbus)"))
    c.add_argument("--parity", choices=("N", "E", "O"), help=_("default: E for mbus and cjt188, N for modbus"))
    c.add_argument("--timeout", type=seconds, default=1.0, metavar="SECONDS",
                   help=_("how long to wait for the first answer byte (default: %(default)s)"))
    c.add_argument("--register", type=int, help=_("Modbus: first register to read (default: 0)"))
    c.add_argument("--count", type=int, help=_("Modbus: how many registers (default: 1)"))
    c.add_argument("--function", type=int, choices=(3, 4),
                   help=_("Modbus: 3 holding or 4 input registers (default: 3)"))
    c.add_argument("--di-order", choices=("2004", "2018"), help=_("CJ/T 188: byte order of the DI (default: 2004)"))
    c.add_argument("--meter-type", choices=tuple(METER_TYPE_CODES), metavar="TYPE",
                   help=_("CJ/T 188: meter type asked for: {types} (default: cold_water)").format(
                       types=", ".join(METER_TYPE_CODES)))
    add_json_option(c)
    c.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from edge.probe.requests import probe_serial

    result = probe_serial(args.port, args.protocol, address=args.address, baudrate=args.baudrate,
                          parity=args.parity, timeout=args.timeout, register=args.register, count=args.count,
                          function=args.function, di_order=args.di_order, meter_type=args.meter_type)
    if args.json:
        render.emit_json(result.as_json())
    else:
        show(result)
    return result.exit_code


def show(result) -> None:
    """The probe as a short table on stdout; what went wrong on stderr."""
    from edge.decode import rows

    def labelled(label: str, text: str) -> str:
        return render.pad(label, _LABEL) + text

    render.out(labelled(_("port"), f"{result.port}  ({result.line})"))
    for number, exchange in enumerate(result.exchanges, 1):
        last = number == len(result.exchanges)
        render.out(labelled(_("sent"), exchange.request.hex(" ") + "  " + _("at {ms} ms").format(ms=exchange.at_ms)))
        if not exchange.answer:
            render.out(labelled(_("answer"), render.paint(_("none"), render.RED)))
            continue
        render.out(labelled(_("answer"), _("{count} bytes, first after {first} ms, last after {last} ms").format(
            count=len(exchange.answer), first=exchange.first_byte_ms, last=exchange.last_byte_ms)))
        for line in render.hex_dump(bytes(exchange.answer), result.offset if last else None):
            render.out(" " * _LABEL + line)
    if result.decoded is not None:
        render.out(_("decoded"))
        render.out(render.table(rows(result.decoded), indent="  "))
    if result.error is not None:
        render.error(f"{result.error}{at_byte(result.offset)}")
    show_suspects(result.suspects)


def show_suspects(suspects: list[str]) -> None:
    """Why a device usually does not answer, on stderr, for a technician to go through."""
    if suspects:
        render.note(_("usual suspects, most likely first:"))
        for suspect in suspects:
            render.note(f"  - {suspect}")
