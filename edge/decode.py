"""``linli decode PROTOCOL HEX``: a frame pasted from a serial sniffer, decoded by the drivers' own codecs.

Each decoder returns a JSON-able dict (no NaN, no bytes); the CLI prints it as a
table or, with ``--json``, as one object. A bad frame raises :class:`BadFrame`
(exit 65) with the offset of the first offending byte. A well-formed error
answer (an M-Bus application error, a CJ/T 188 error reply, a Modbus exception)
is a decoded frame, not a bad one.

What the JSON says:

* **M-Bus** answers: ``header`` (``id`` the eight digits, ``manufacturer`` three
  letters, ``version``, ``access_no``, ``status``, ``medium`` by name) and
  ``records``, each with ``quantity``, ``value``, ``unit``, ``function``,
  ``storage``, ``tariff``, ``subunit``, plus ``vife`` (the VIF extension codes as
  sent) and ``error`` (a record error the meter reported, else null). Values are
  scaled into one unit per quantity (``m3``, ``m3/h``, ``Wh`` or ``J``, ``W``,
  ``degC``, ``K``, ``bar``, durations in ``s``); dates are ISO 8601 in the
  meter's local time; a value the meter marks invalid is null. Master requests
  (SND_NKE, REQ_UD2, secondary select) are named.
* **CJ/T 188** read-data replies: ``meter_type``, ``address``, ``control``,
  ``di``, ``volume`` and ``settlement_volume`` — each ``{"value", "unit",
  "value_m3"}``: the number and unit exactly as the meter sent them (a sniffer
  shows what is on the wire), and the same volume in m³ (what the
  ``cjt188_meter`` driver publishes; null when the unit is not a volume) —
  ``clock`` (ISO 8601, meter local time; null when unset or not a date, the
  bytes as sent are in ``clock_raw``) and ``status``
  (``st0``, ``st1`` and the valve and battery bits read with the default
  mapping: ST0 bits 0–1 valve, bit 2 battery).
* **Modbus RTU**: a read request or its answer (registers as numbers).
* **MR60BHA1 / MR60BHA2** radar frames (one or several back to back):
  ``{"frames": [{"kind", "value", "unit"}, …]}`` with the kinds ``presence``,
  ``movement``, ``distance`` (cm), ``heart_rate`` (bpm), ``breathing_rate``
  (1/min), ``in_bed``, ``sleep_state`` as the radar sent them (a rate of 0 stays
  0; "none" states and "no target" are null); valid frames without such a value
  are listed under ``ignored``.

>>> decode("mbus", "10 7B 05 80 16")["function"]
'REQ_UD2'
>>> decode("cjt188", "68 10 01 00 00 05 08 00 00 83 03 81 0A 00 97 16")["address"]
'00000805000001'
>>> decode("mr60bha1", "53 59 85 02 00 01 59 8D 54 43")
{'frames': [{'kind': 'heart_rate', 'value': 89, 'unit': 'bpm'}]}
"""

from __future__ import annotations

import re
from typing import Any, Callable

from drivers.codecs import cjt188, mbus, mbus_link, modbus, mr60bha1, mr60bha2
from drivers.errors import DeviceFault, FrameError
from edge.errors import LinliError
from edge.exits import EX_DATAERR
from edge.i18n import _



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
    cleaned = re.sub(r"[\s,:;.-]", "", cleaned)  # "." as ESPHome logs bytes
    if not cleaned or len(cleaned) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", cleaned):
        bad = re.search(r"[^0-9a-fA-F]", cleaned)
        raise BadFrame(_("not hex bytes: {text!r}").format(text=text[:80]),
                       offset=None if bad is None else bad.start() // 2)
    return bytes.fromhex(cleaned)


# --- M-Bus -------------------------------------------------------------------------------------------------------

# Control field: bit 6 "from the master", bit 5 FCB (or ACD), bit 4 FCV (or DFC), bits 0–3 the function.
_MBUS_FUNCTIONS = {0x40: "SND_NKE", 0x4B: "REQ_UD2", 0x4A: "REQ_UD1", 0x43: "SND_UD", 0x08: "RSP_UD"}
_CI_SND_UD_DATA = 0x51


def _mbus_function(control: int) -> str:
    """The link-layer function of a control byte, whatever its FCB/FCV (or ACD/DFC) bits."""
    return _MBUS_FUNCTIONS.get(control & 0x4F, f"C_0x{control:02X}")


def _mbus_link(link: mbus_link.Frame) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": "mbus", "frame": link.kind}
    if link.kind == "ack":
        return out
    out.update(control=link.control, function=_mbus_function(link.control), address=link.address)
    if link.control & 0x40 and link.control & 0x10:  # a master's request with a valid frame-count bit
        out["fcb"] = bool(link.control & 0x20)
    if link.ci is not None:
        out["ci"] = link.ci
    return out


def _mbus_header(response: mbus.Response) -> dict[str, Any] | None:
    if response.short_header is not None:
        short = response.short_header
        return {"access_no": short.access_no, "status": short.status, "signature": short.signature}
    header = response.header
    if header is None:
        return None
    return {"id": header.id, "manufacturer": header.manufacturer, "version": header.version,
            "access_no": header.access_no, "status": header.status, "medium": header.medium,
            "medium_code": header.medium_code, "signature": header.signature}


def _mbus_record(record: mbus.Record) -> dict[str, Any]:
    return {"quantity": record.quantity, "value": record.value, "unit": record.unit, "function": record.function,
            "storage": record.storage, "tariff": record.tariff, "subunit": record.subunit,
            "vife": list(record.vife), "error": record.error}


def _mbus_select(data: bytes) -> dict[str, Any]:
    """CI 0x52: the secondary address the master selects; F digits and 0xFF bytes are wildcards."""
    if len(data) != 8:
        raise FrameError(f"M-Bus secondary-address selection carries 8 bytes, got {len(data)}", offset=7)
    code = int.from_bytes(data[4:6], "little")
    return {"select": {"id": data[3::-1].hex().upper(),
                       "manufacturer": None if code == 0xFFFF else mbus.manufacturer_letters(code),
                       "version": None if data[6] == 0xFF else data[6],
                       "medium": None if data[7] == 0xFF else mbus.MEDIA.get(data[7], f"reserved_0x{data[7]:02X}")}}


def decode_mbus(frame: bytes) -> dict[str, Any]:
    """Any M-Bus frame: the master's requests, ACK, a meter's answer, or its application error."""
    link = mbus_link.parse_frame(frame)
    out = _mbus_link(link)
    if link.ci == mbus_link.CI_SELECT_SECONDARY:
        return out | _mbus_select(link.data)
    if link.ci == _CI_SND_UD_DATA:
        records, manufacturer_data, _more = mbus.decode_records(link.data, 7)
        return out | {"records": [_mbus_record(r) for r in records],
                      "manufacturer_data": manufacturer_data.hex() or None}
    if link.kind in ("ack", "short") or (link.kind == "control" and link.ci != mbus.CI_APPLICATION_ERROR):
        return out
    try:
        response = mbus.decode_response(frame)
    except mbus.MBusApplicationError as error:
        return out | {"application_error": {"code": error.code, "message": str(error)}}
    return out | {"header": _mbus_header(response), "records": [_mbus_record(r) for r in response.records],
                  "manufacturer_data": response.manufacturer_data.hex() or None,
                  "more_records_follow": response.more_records_follow}


# --- CJ/T 188 ----------------------------------------------------------------------------------------------------

_UNIT_NAMES = {unit.symbol: unit.name for unit in cjt188.UNITS.values()}


def _cjt188_volume(value: float | None, symbol: str, m3: float | None) -> dict[str, Any]:
    return {"value": value, "unit": _UNIT_NAMES.get(symbol, symbol), "value_m3": m3}


def _cjt188_reading(frame: bytes, data: bytes) -> dict[str, Any]:
    reading = cjt188.decode_read_data_reply(frame)
    status = reading.status
    return {"di": f"{cjt188.DI_READ_DATA:04X}", "di_order": reading.di_order, "ser": reading.ser,
            "volume": _cjt188_volume(reading.volume, reading.volume_unit, reading.volume_m3),
            "settlement_volume": _cjt188_volume(reading.settlement_volume, reading.settlement_volume_unit,
                                                reading.settlement_volume_m3),
            "clock": reading.clock, "clock_raw": data[13:20].hex(" "),
            "status": {"st0": status.st0, "st1": status.st1, "valve": status.valve,
                       "battery_low": status.battery_low}}


def _cjt188_di(data: bytes, di: int) -> dict[str, Any] | None:
    """DI, edition and SER when ``data`` opens with ``di`` in either byte order."""
    for order in cjt188.DI_ORDERS:
        if len(data) >= 3 and data[:2] == cjt188.di_bytes(di, order):
            return {"di": f"{di:04X}", "di_order": order, "ser": data[2]}
    return None


def decode_cjt188(frame: bytes) -> dict[str, Any]:
    """A CJ/T 188 request or reply; a 901F water reply in full, other DIs as their data bytes."""
    parsed = cjt188.parse_frame(frame)
    out: dict[str, Any] = {"protocol": "cjt188", "meter_type": parsed.meter_type_name, "address": parsed.address,
                           "control": parsed.control}
    reply, failed = parsed.control & cjt188.REPLY_BIT, parsed.control & cjt188.ERROR_BIT
    function = parsed.control & 0x3F
    if reply and failed:
        status = parsed.data[1:] if len(parsed.data) > 1 else parsed.data
        return out | {"frame": "error_reply", "status": status.hex(" ")}
    out["frame"] = "reply" if reply else "request"
    if function == cjt188.READ_DATA:
        known = _cjt188_di(parsed.data, cjt188.DI_READ_DATA)
        if known and reply and len(parsed.data) == cjt188.READ_DATA_REPLY_LENGTH:
            return out | _cjt188_reading(frame, parsed.data)
        if known and not reply and len(parsed.data) == 3:
            return out | known
    if function == cjt188.READ_ADDRESS:
        known = _cjt188_di(parsed.data, cjt188.DI_READ_ADDRESS)
        if known and len(parsed.data) == cjt188.READ_ADDRESS_REPLY_LENGTH:
            return out | known
    return out | {"data": parsed.data.hex(" ")}


# --- Modbus RTU --------------------------------------------------------------------------------------------------


def decode_modbus(frame: bytes) -> dict[str, Any]:
    """A read-registers request (8 bytes) or its answer, as a sniffer sees either."""
    if len(frame) < 4:
        raise FrameError(f"a Modbus RTU frame has at least 4 bytes, got {len(frame)}", offset=len(frame))
    unit, function = frame[0], frame[1] & 0x7F
    if function not in (3, 4):
        raise FrameError(f"function {function} is not a register read (3 or 4)", offset=1)
    if len(frame) == 8 and not frame[1] & 0x80:  # answers to 3/4 have an odd length (5 + 2n), requests are 8 bytes
        address, count = int.from_bytes(frame[2:4], "big"), int.from_bytes(frame[4:6], "big")
        try:
            expected = modbus.read_registers_request(unit, address, count, function)
        except ValueError as error:  # unit 0, no registers, more than a read may ask for
            raise FrameError(f"not a valid read request: {error}", offset=0) from None
        if expected != frame:
            raise FrameError(f"CRC mismatch: expected {expected[6:].hex(' ')}", offset=6)
        return {"protocol": "modbus", "frame": "request", "unit": unit, "function": function,
                "address": address, "count": count}
    count = frame[2] // 2 if frame[1] == function else 0
    try:
        registers = modbus.decode_registers_response(frame, unit, function, max(count, 1))
    except modbus.ModbusException as exc:
        return {"protocol": "modbus", "frame": "exception", "unit": unit, "function": function,
                "code": exc.code, "error": str(exc)}
    return {"protocol": "modbus", "frame": "response", "unit": unit, "function": function, "registers": registers}


# --- 60 GHz vital-sign radars ------------------------------------------------------------------------------------


def _radar(codec, frames: list, overhead: int, other: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``{"frames": [{"kind", "value", "unit"}, …]}``; frames that carry none of the kinds (waveforms, point
    clouds, …) are listed under ``ignored`` so that a pasted capture is fully accounted for."""
    decoded, ignored, start = [], [], 0
    for frame in frames:
        try:
            found = codec.values(frame)
        except FrameError as exc:  # its offset counts from the frame's first byte, not the input's
            raise FrameError(str(exc), offset=start + (exc.offset or 0)) from None
        start += overhead + len(frame.data)
        decoded += [{"kind": v.kind, "value": v.value, "unit": v.unit} for v in found]
        if not found:
            ignored.append(other(frame) | {"data": frame.data.hex(" ")})
    return {"frames": decoded} | ({"ignored": ignored} if ignored else {})


def decode_mr60bha1(raw: bytes) -> dict[str, Any]:
    """One or more MR60BHA1 frames back to back (``53 59 … 54 43``)."""
    return _radar(mr60bha1, mr60bha1.parse_frames(raw), mr60bha1.MIN_FRAME_LENGTH,
                  lambda f: {"control": f"{f.control:02X}", "command": f"{f.command:02X}"})


def decode_mr60bha2(raw: bytes) -> dict[str, Any]:
    """One or more MR60BHA2 frames back to back (``01 ID LEN TYPE HCK DATA DCK``)."""
    return _radar(mr60bha2, mr60bha2.parse_frames(raw), mr60bha2.HEADER_LENGTH + 1,
                  lambda f: {"type": f"{f.type:04X}"})


DECODERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "mbus": decode_mbus,
    "cjt188": decode_cjt188,
    "modbus": decode_modbus,
    "mr60bha1": decode_mr60bha1,
    "mr60bha2": decode_mr60bha2,
}


def decode(protocol: str, text: str) -> dict[str, Any]:
    """Decode ``text`` (hex) as a ``protocol`` frame; :class:`BadFrame` when it is not one."""
    return decode_bytes(protocol, parse_hex(text))


def decode_bytes(protocol: str, frame: bytes) -> dict[str, Any]:
    """Decode ``frame`` as a ``protocol`` frame; :class:`BadFrame` when it is not one."""
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
