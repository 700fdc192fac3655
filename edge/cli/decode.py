"""The ``linli decode`` command: one frame, or a sniffer's capture, decoded by the drivers' own codecs.

The bytes come as hex arguments, as hex on standard input (no argument, or ``-``), or raw
from a file (``--file``, as a sniffer saves them). Input that is exactly one frame (for
the radars: frames back to back) is decoded as before (:mod:`edge.decode`). Anything
else is a capture: its frames are found (:mod:`edge.capture`) and the bytes outside
them reported with their offsets. Exit 65 only when not a single frame is found.
This module is imported by ``edge/cli.py`` to build the parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from edge.cli import render
from edge.errors import LinliError
from edge.i18n import _, ngettext

EX_OK, EX_NOINPUT = 0, 66
#: Bytes read from a file at a time; a file no longer than this is also tried as one frame.
READ_SIZE = 64 * 1024
PROTOCOLS = ("mbus", "cjt188", "modbus", "mr60bha1", "mr60bha2")

EPILOG = _("""Bytes before, between and after frames are skipped and reported with their offsets.
examples:
  linli decode mbus 10 5B 01 5C 16
  linli decode modbus 01 03 00 02 00 03 A4 0B --json
  linli decode cjt188 --file capture.bin --json     raw bytes as a sniffer saved them
  xxd -p capture.bin | linli decode mr60bha1        hex on standard input
exit status 0 when a frame was decoded, 65 when there is none""")


class CaptureUnreadable(LinliError):
    """The ``--file`` capture cannot be read (exit 66)."""

    exit_code = EX_NOINPUT


def add_command(sub: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Add ``decode`` to the ``linli`` subcommands ``sub``, run by ``handler`` (which calls :func:`run`)."""
    p = sub.add_parser("decode", help=_("decode a frame pasted from a serial sniffer"), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("hex", nargs="*", metavar="HEX",
                   help=_("the bytes in hex, spaces allowed; none or - reads hex from standard input"))
    p.add_argument("--file", metavar="FILE", help=_("read raw bytes from FILE (a sniffer's capture)"))
    p.add_argument("--json", action="store_true", help=_("machine-readable output"))
    p.set_defaults(func=handler)


def register(sub: Any) -> None:
    add_command(sub, lambda args: run(args, render.paint))


def at_byte(offset: int | None) -> str:
    """`` (at byte 5)`` after an error message that knows where in the frame it is, else nothing."""
    return "" if offset is None else _(" (at byte {offset})").format(offset=offset)


def run(args: argparse.Namespace, colour: Callable[..., str]) -> int:
    """Decode what ``args`` names; ``colour(text, code, stream)`` colours for a terminal."""
    from edge.decode import BadFrame, parse_hex

    if args.file is not None and args.hex:
        raise BadFrame(_("give the bytes as hex or with --file, not both"), offset=None)
    try:
        if args.file is not None:
            try:
                file = open(args.file, "rb")
            except OSError as exc:
                raise CaptureUnreadable(_("cannot read {path}: {error}").format(
                    path=args.file, error=exc.strerror)) from None
            with file:
                result = _decoded(args.protocol, _pieces(file))
        else:
            text = sys.stdin.read() if args.hex in ([], ["-"]) else " ".join(args.hex)
            result = _decoded(args.protocol, iter((parse_hex(text),)))
    except BadFrame as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "offset": exc.offset}))
        else:
            print(colour(_("bad frame"), "31", sys.stderr) + f": {exc}{at_byte(exc.offset)}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    elif "skipped" in result:
        _print_capture(result)
    else:
        _print_rows(result, "")
    return EX_OK


def _pieces(file: BinaryIO) -> Iterator[bytes]:
    while piece := file.read(READ_SIZE):
        yield piece


def _decoded(protocol: str, pieces: Iterator[bytes]) -> dict[str, Any]:
    """One clean frame as :func:`edge.decode.decode_bytes` gives it; else the capture's frames and skipped bytes."""
    from edge.capture import CaptureScanner
    from edge.decode import BadFrame, decode_bytes

    first = next(pieces, b"")
    second = next(pieces, b"")
    clean_error = None
    if not second:
        try:
            return decode_bytes(protocol, first)
        except BadFrame as exc:
            clean_error = exc
    scanner = CaptureScanner(protocol)
    frames = []
    for piece in (first, second, *pieces) if second else (first,):
        frames += [_frame(protocol, found) for found in scanner.feed(piece)]
    frames += [_frame(protocol, found) for found in scanner.finish()]
    if clean_error is not None and not scanner.skipped and any("error" in f["decoded"] for f in frames):
        raise clean_error      # nothing but frames, one of them refused: the single-frame verdict stands
    if not frames:
        raise clean_error or BadFrame(_("no {protocol} frame in the {size} bytes").format(
            protocol=protocol, size=scanner.size), offset=None)
    return {"protocol": protocol, "bytes": scanner.size, "frames": frames,
            "skipped": [{"offset": offset, "length": length} for offset, length in scanner.skipped]}


def _frame(protocol: str, found) -> dict[str, Any]:
    from edge.decode import BadFrame, decode_bytes

    try:
        decoded = decode_bytes(protocol, found.raw)
    except BadFrame as exc:      # a frame by its checksum whose content the codec refuses
        decoded = {"error": str(exc)}
    return {"offset": found.offset, "length": len(found.raw), "hex": found.raw.hex(" "), "decoded": decoded}


def _print_capture(result: dict[str, Any]) -> None:
    """Frames and skipped ranges in the order they lie in the capture."""
    entries = [(f["offset"], "frame", f) for f in result["frames"]]
    entries += [(s["offset"], "skipped", s) for s in result["skipped"]]
    for offset, kind, entry in sorted(entries, key=lambda e: e[0]):
        if kind == "skipped":
            print(ngettext("skipped    {length} byte at {first}", "skipped    {length} bytes at {first}-{last}",
                           entry["length"]).format(first=offset, last=offset + entry["length"] - 1,
                                                   length=entry["length"]))
            continue
        print(_("frame      at byte {offset}, {length} bytes: {hex}").format(
            offset=offset, length=entry["length"], hex=entry["hex"]))
        _print_rows(entry["decoded"], "           ")
    print(ngettext("{frames} frame, {skipped} bytes skipped, in {size} bytes",
                   "{frames} frames, {skipped} bytes skipped, in {size} bytes", len(result["frames"])).format(
        frames=len(result["frames"]), skipped=sum(s["length"] for s in result["skipped"]), size=result["bytes"]))


def _print_rows(decoded: dict[str, Any], indent: str) -> None:
    from edge.decode import rows

    table = rows(decoded)
    width = max((len(field) for field, _value in table), default=0)
    for field, value in table:
        print(f"{indent}{field:<{width}}  {value}")
