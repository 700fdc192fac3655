"""``linli decode PROTOCOL HEX``: a frame pasted from a serial sniffer, decoded by the drivers' own codecs.

Each decoder returns a JSON-able dict; the CLI prints it as a table or, with
``--json``, as one object. A bad frame raises :class:`BadFrame` (exit 65) with
the offset of the first offending byte.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

from drivers.codecs import cjt188, mbus, modbus
from drivers.errors import DeviceFault, FrameError
from edge.errors import LinliError
from edge.i18n import _

EX_DATAERR = 65


class BadFrame(LinliError):
    """The pasted bytes are not a valid frame of that protocol."""

    exit_code = EX_DATAERR

    def __init__(self, message: str, offset: int | None):
        super().__init__(message)
        self.offset = offset


def parse_hex(text: str) -> bytes:
    """``"68 03 03 68"``, ``"68030368"`` or ``"0x68,0x03"`` → bytes.

    >>> parse_hex("e5").hex(), parse_hex("10 5B 01 5C 16").hex(" ")
    ('e5', '10 5b 01 5c 16')
    """
    cleaned = re.sub(r"0[xX]", "", text)
    cleaned = re.sub(r"[\s,:;-]", "", cleaned)
    if not cleaned or len(cleaned) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", cleaned):
        bad = re.search(r"[^0-9a-fA-F]", cleaned)
        raise BadFrame(_("not hex bytes: {text!r}").format(text=text[:80]),
                       offset=None if bad is None else bad.start() // 2)
    return bytes.fromhex(cleaned)


def _plain(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def decode_mbus(frame: bytes) -> dict[str, Any]:
    link = mbus.parse_frame(frame)
    if link.kind != "long":
        return {"protocol": "mbus", "frame": link.kind, "control": link.control, "address": link.address}
    response = mbus.decode_response(frame)
    return {"protocol": "mbus", "frame": "long", "address": response.address, "ci": response.ci,
            "header": _plain(response.header), "records": [_plain(r) for r in response.records],
            "manufacturer_data": response.manufacturer_data.hex() if response.manufacturer_data else None,
            "more_records_follow": response.more_records_follow}


def decode_cjt188(frame: bytes) -> dict[str, Any]:
    parsed = cjt188.parse_frame(frame)
    out = {"protocol": "cjt188", "meter_type": parsed.meter_type_name, "address": parsed.address,
           "control": parsed.control}
    if parsed.control == 0x81:
        out["reading"] = _plain(cjt188.decode_read_data_reply(frame))
    elif parsed.control == 0x83:
        out["address"] = cjt188.decode_read_address_reply(frame)
    else:
        out["data"] = parsed.data.hex(" ")
    return out


def decode_modbus(frame: bytes) -> dict[str, Any]:
    """A read-registers request (8 bytes) or its answer, as a sniffer sees either."""
    if len(frame) < 4:
        raise FrameError(f"a Modbus RTU frame has at least 4 bytes, got {len(frame)}", offset=len(frame))
    unit, function = frame[0], frame[1] & 0x7F
    if function not in (3, 4):
        raise FrameError(f"function {function} is not a register read (3 or 4)", offset=1)
    if len(frame) == 8:  # answers to 3/4 have an odd length (5 + 2n), requests are 8 bytes
        address, count = int.from_bytes(frame[2:4], "big"), int.from_bytes(frame[4:6], "big")
        expected = modbus.read_registers_request(unit, address, count, function)
        if expected != frame:
            raise FrameError(f"CRC mismatch: expected {expected[6:].hex(' ')}", offset=6)
        return {"protocol": "modbus", "frame": "request", "unit": unit, "function": function,
                "address": address, "count": count}
    count = frame[2] // 2 if frame[1] == function else 0
    try:
        registers = modbus.decode_registers_response(frame, unit, function, max(count, 1))
    except DeviceFault as exc:
        return {"protocol": "modbus", "frame": "exception", "unit": unit, "function": function,
                "code": getattr(exc, "code", None), "error": str(exc)}
    return {"protocol": "modbus", "frame": "response", "unit": unit, "function": function, "registers": registers}


DECODERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "mbus": decode_mbus,
    "cjt188": decode_cjt188,
    "modbus": decode_modbus,
}


def decode(protocol: str, text: str) -> dict[str, Any]:
    """Decode ``text`` (hex) as a ``protocol`` frame; :class:`BadFrame` when it is not one."""
    frame = parse_hex(text)
    try:
        return DECODERS[protocol](frame)
    except FrameError as exc:
        raise BadFrame(str(exc), exc.offset) from None
    except DeviceFault as exc:  # a well-formed error reply is a decoded frame, not bad data
        return {"protocol": protocol, "device_fault": str(exc)}


def rows(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a decoded dict into (field, value) rows for the table view."""
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for key, item in value.items():
            out += rows(item, f"{prefix}.{key}" if prefix else key)
        return out
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            out += rows(item, f"{prefix}[{i}]")
        return out
    return [(prefix, "" if value is None else str(value))]
