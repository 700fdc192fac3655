"""M-Bus application layer (EN 13757-3): the variable data structure of a meter's RSP_UD answer.

Link-layer framing and the master's requests live in :mod:`drivers.codecs.mbus_link`,
the VIF tables in :mod:`drivers.codecs.mbus_vif`; this module turns a checked long
frame into a fixed header and a list of :class:`Record`.

>>> answer = decode_response(bytes.fromhex(
...     "68 15 15 68 08 05 72 78 56 34 12 c5 14 00 07 2a 00 00 00 04 13 39 30 00 00 1d 16"))
>>> answer.header.id, answer.header.manufacturer, answer.header.medium
('12345678', 'EFE', 'water')
>>> answer.records[0].quantity, answer.records[0].value, answer.records[0].unit
('volume', 12.345, 'm3')
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from drivers.codecs.mbus_link import parse_frame
from drivers.codecs.mbus_vif import VifInfo, describe_fb, describe_fd, describe_vif
from drivers.errors import FrameError

CI_VARIABLE_LONG_HEADER = 0x72
#: Mode 2 of EN 1434-3: the same structure with every multi-byte field sent most significant byte first.
CI_VARIABLE_MSB_FIRST = 0x76
CI_VARIABLE_NO_HEADER = 0x78
HEADER_LENGTH = 12
MAX_DIFE = 10
MAX_VIFE = 10

FUNCTIONS = ("instantaneous", "maximum", "minimum", "error")

MEDIA = {
    0x00: "other", 0x01: "oil", 0x02: "electricity", 0x03: "gas", 0x04: "heat_outlet", 0x05: "steam",
    0x06: "warm_water", 0x07: "water", 0x08: "heat_cost_allocator", 0x09: "compressed_air",
    0x0A: "cooling_outlet", 0x0B: "cooling_inlet", 0x0C: "heat_inlet", 0x0D: "heat_cooling", 0x0E: "bus_system",
    0x0F: "unknown", 0x15: "hot_water", 0x16: "cold_water", 0x17: "dual_water", 0x18: "pressure",
    0x19: "ad_converter",
}  # fmt: skip

# Data field (low nibble of the DIF) -> (bytes, coding); variable length (0x0D) is read from its LVAR byte.
_DATA_FIELDS = {
    0x0: (0, "none"), 0x1: (1, "int"), 0x2: (2, "int"), 0x3: (3, "int"), 0x4: (4, "int"), 0x5: (4, "real"),
    0x6: (6, "int"), 0x7: (8, "int"), 0x8: (0, "none"), 0x9: (1, "bcd"), 0xA: (2, "bcd"), 0xB: (3, "bcd"),
    0xC: (4, "bcd"), 0xE: (6, "bcd"),
}  # fmt: skip

_DIF_MANUFACTURER = 0x0F
_DIF_MORE_RECORDS = 0x1F
_DIF_IDLE_FILLER = 0x2F
_VIF_PLAIN_TEXT = 0x7C
_VIF_FB = 0xFB
_VIF_FD = 0xFD
_VIF_ANY = 0x7E
_VIF_MANUFACTURER = 0x7F
_EXTENSION = 0x80


@dataclass(frozen=True)
class Header:
    """The 12-byte fixed part of a CI 0x72 answer."""

    id: str
    manufacturer: str
    version: int
    medium: str
    medium_code: int
    access_no: int
    status: int
    signature: int


@dataclass(frozen=True)
class Record:
    """One data record; ``value`` is scaled by the VIF, ``None`` where the meter marked it invalid.

    ``vife`` lists the VIF extension codes (without the extension bit) that follow the
    VIF: a record with a VIFE may be a rate, a pulse weight or an error code rather
    than the plain quantity, so readers that want plain readings skip those.
    """

    quantity: str
    value: int | float | str | None
    unit: str
    function: str
    storage: int
    tariff: int
    subunit: int
    vife: tuple[int, ...] = ()
    offset: int = 0


@dataclass(frozen=True)
class Response:
    """A decoded RSP_UD: ``header`` is ``None`` for CI 0x78 (no fixed header); CI 0x76 arrives here as LSB-first."""

    address: int
    ci: int
    header: Header | None
    records: list[Record] = field(default_factory=list)
    manufacturer_data: bytes = b""
    more_records_follow: bool = False


def manufacturer_letters(code: int) -> str:
    """Three letters from the 2-byte manufacturer code.

    >>> manufacturer_letters(0x14C5)
    'EFE'
    """
    return "".join(chr(((code >> shift) & 0x1F) + 64) for shift in (10, 5, 0))


def _bcd_digits(data: bytes) -> str | None:
    """Decimal digits, most significant first, of little-endian BCD bytes; ``None`` if a nibble is not 0–9."""
    text = data[::-1].hex()
    return text if text.isdigit() else None


def _bcd_value(data: bytes) -> int | None:
    text = data[::-1].hex().upper()
    # A leading F nibble marks a negative BCD number (EN 13757-3 annex A, type A).
    if text.startswith("F") and text[1:].isdigit():
        return -int(text[1:])
    return int(text) if text.isdigit() else None


def decode_header(data: bytes, offset: int = 0, msb_first: bool = False) -> Header:
    """The fixed header at the start of CI 0x72 (or, ``msb_first``, 0x76) data; ``offset`` only positions errors."""
    if len(data) < HEADER_LENGTH:
        raise FrameError(f"M-Bus fixed header needs {HEADER_LENGTH} bytes, got {len(data)}", offset=offset + len(data))
    if msb_first:
        data = data[3::-1] + data[5:3:-1] + data[6:10] + data[11:9:-1]
    identity = _bcd_digits(data[0:4])
    if identity is None:
        raise FrameError(f"M-Bus identification number {data[0:4][::-1].hex()} is not BCD", offset=offset)
    medium = data[7]
    return Header(
        id=identity,
        manufacturer=manufacturer_letters(int.from_bytes(data[4:6], "little")),
        version=data[6],
        medium=MEDIA.get(medium, f"reserved_0x{medium:02X}"),
        medium_code=medium,
        access_no=data[8],
        status=data[9],
        signature=int.from_bytes(data[10:12], "little"),
    )


def decode_response(frame: bytes) -> Response:
    """Check a long frame and decode its variable data structure (CI 0x72, 0x76 or 0x78)."""
    parsed = parse_frame(frame)
    if parsed.kind != "long":
        raise FrameError(f"expected an M-Bus long frame with user data, got a {parsed.kind} frame", offset=0)
    data_at = 7
    msb_first = parsed.ci == CI_VARIABLE_MSB_FIRST
    if parsed.ci in (CI_VARIABLE_LONG_HEADER, CI_VARIABLE_MSB_FIRST):
        header = decode_header(parsed.data, data_at, msb_first)
        body_at = data_at + HEADER_LENGTH
    elif parsed.ci == CI_VARIABLE_NO_HEADER:
        header, body_at = None, data_at
    else:
        raise FrameError(f"M-Bus CI 0x{parsed.ci:02X} is not a supported variable data structure", offset=6)
    body = bytes(frame)[body_at : 4 + frame[1]]
    records, manufacturer_data, more = decode_records(body, body_at, msb_first)
    return Response(parsed.address, parsed.ci, header, records, manufacturer_data, more)


def decode_records(body: bytes, base: int = 0, msb_first: bool = False) -> tuple[list[Record], bytes, bool]:
    """Records, manufacturer-specific bytes after DIF 0x0F/0x1F, and whether DIF 0x1F announced more.

    ``base`` is the offset of ``body`` in the frame, so errors point into the frame.
    """
    records: list[Record] = []
    pos = 0
    while pos < len(body):
        dif = body[pos]
        if dif == _DIF_IDLE_FILLER:
            pos += 1
            continue
        if dif in (_DIF_MANUFACTURER, _DIF_MORE_RECORDS):
            return records, body[pos + 1 :], dif == _DIF_MORE_RECORDS
        record, pos = _decode_record(body, pos, base, msb_first)
        records.append(record)
    return records, b"", False


def _byte_at(body: bytes, pos: int, base: int, what: str) -> int:
    if pos >= len(body):
        raise FrameError(f"M-Bus record truncated: {what} missing", offset=base + pos)
    return body[pos]


def _decode_record(body: bytes, pos: int, base: int, msb_first: bool) -> tuple[Record, int]:
    start = pos
    dif = body[pos]
    storage = (dif >> 6) & 0x01
    function = FUNCTIONS[(dif >> 4) & 0x03]
    tariff = subunit = 0
    extension = dif & _EXTENSION
    pos += 1
    for index in range(MAX_DIFE + 1):
        if not extension:
            break
        if index == MAX_DIFE:
            raise FrameError(f"M-Bus record has more than {MAX_DIFE} DIFEs", offset=base + pos)
        dife = _byte_at(body, pos, base, "DIFE")
        storage |= (dife & 0x0F) << (1 + 4 * index)
        tariff |= ((dife >> 4) & 0x03) << (2 * index)
        subunit |= ((dife >> 6) & 0x01) << index
        extension = dife & _EXTENSION
        pos += 1
    info, vife, pos = _decode_vif(body, pos, base)
    value, pos = _decode_data(body, pos, base, dif & 0x0F, info, msb_first)
    return Record(info.quantity, value, info.unit, function, storage, tariff, subunit, vife, base + start), pos


def _decode_vif(body: bytes, pos: int, base: int) -> tuple[VifInfo, tuple[int, ...], int]:
    vif = _byte_at(body, pos, base, "VIF")
    pos += 1
    extension = vif & _EXTENSION
    if vif in (_VIF_FD, _VIF_FB):
        code = _byte_at(body, pos, base, "extension-table VIFE")
        pos += 1
        info = describe_fd(code) if vif == _VIF_FD else describe_fb(code)
        extension = code & _EXTENSION
    elif vif & 0x7F == _VIF_PLAIN_TEXT:
        length = _byte_at(body, pos, base, "plain-text VIF length")
        text = body[pos + 1 : pos + 1 + length]
        if len(text) < length:
            raise FrameError("M-Bus plain-text VIF truncated", offset=base + len(body))
        pos += 1 + length
        # The unit text is sent last character first.
        info = VifInfo("plain_text", text[::-1].decode("latin-1"))
    elif vif & 0x7F == _VIF_MANUFACTURER:
        info = VifInfo("manufacturer_specific", kind="raw")
    elif vif & 0x7F == _VIF_ANY:
        info = VifInfo("any", kind="raw")
    else:
        info = describe_vif(vif)
    vifes = []
    while extension:
        if len(vifes) == MAX_VIFE:
            raise FrameError(f"M-Bus record has more than {MAX_VIFE} VIFEs", offset=base + pos)
        code = _byte_at(body, pos, base, "VIFE")
        vifes.append(code & 0x7F)
        extension = code & _EXTENSION
        pos += 1
    if _VIF_MANUFACTURER in vifes:
        # A manufacturer-specific VIFE changes the meaning in a way only the maker knows: never report the base unit.
        info = VifInfo("manufacturer_specific", kind="raw")
    return info, tuple(vifes), pos


def _take(body: bytes, pos: int, size: int, base: int) -> bytes:
    if pos + size > len(body):
        raise FrameError(f"M-Bus record data truncated: {size} bytes needed", offset=base + len(body))
    return body[pos : pos + size]


def _decode_data(body: bytes, pos: int, base: int, field_code: int, info: VifInfo, msb_first: bool):
    if field_code == 0x0D:
        return _decode_variable(body, pos, base, info)
    if field_code == 0x0F:
        raise FrameError("M-Bus special-function data field inside a record", offset=base + pos - 1)
    size, coding = _DATA_FIELDS[field_code]
    raw = _take(body, pos, size, base)
    if msb_first:
        raw = raw[::-1]
    pos += size
    if coding == "none":
        return None, pos
    # Dates are bit fields in integer-coded data (types G and F); any other coding is not a date we can trust.
    if info.kind == "date":
        return (_type_g(raw) if coding == "int" and size == 2 else None), pos
    if info.kind == "datetime":
        return (_type_f(raw) if coding == "int" and size == 4 else None), pos
    if coding == "int":
        number = int.from_bytes(raw, "little", signed=True)
    elif coding == "real":
        number = struct.unpack("<f", raw)[0]
    else:
        number = _bcd_value(raw)
        if number is None:
            return None, pos
    if info.kind == "raw":
        return raw[::-1].hex() if coding != "real" else number, pos
    return _scale(number, info.exponent), pos


def _scale(number: int | float, exponent: int) -> int | float:
    if exponent >= 0:
        return number * 10**exponent
    # Division by an exact power of ten rounds correctly (332 / 1000 == 0.332, 332 * 0.001 may not).
    return number / 10**-exponent


def _decode_variable(body: bytes, pos: int, base: int, info: VifInfo):
    lvar = _byte_at(body, pos, base, "LVAR")
    pos += 1
    if lvar <= 0xBF:
        raw = _take(body, pos, lvar, base)
        # Text is sent last character first.
        return raw[::-1].decode("latin-1"), pos + lvar
    if lvar <= 0xDF:
        size = lvar & 0x0F
        raw = _take(body, pos, size, base)
        digits = _bcd_digits(raw)
        if digits is None or not digits:
            return None, pos + size
        number = int(digits) * (-1 if lvar >= 0xD0 else 1)
    elif lvar <= 0xEF:
        size = lvar - 0xE0
        raw = _take(body, pos, size, base)
        number = int.from_bytes(raw, "little", signed=True) if size else 0
    elif lvar <= 0xF4:
        size = 4 * (lvar - 0xEC)
        raw = _take(body, pos, size, base)
        number = int.from_bytes(raw, "little", signed=True)
    else:
        raise FrameError(f"M-Bus LVAR 0x{lvar:02X} is reserved", offset=base + pos - 1)
    if info.kind != "number":
        return raw[::-1].hex(), pos + size
    return _scale(number, info.exponent), pos + size


def _year(low3: int, high4: int) -> int:
    return 2000 + ((high4 << 3) | low3)


def _type_g(raw: bytes) -> str | None:
    """Date, type G: ``YYYY-MM-DD``; ``None`` when the fields are not a date (e.g. all zero)."""
    day, month = raw[0] & 0x1F, raw[1] & 0x0F
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return None
    return f"{_year(raw[0] >> 5, raw[1] >> 4):04d}-{month:02d}-{day:02d}"


def _type_f(raw: bytes) -> str | None:
    """Date and time, type F: ``YYYY-MM-DDTHH:MM:00`` (meter local time); ``None`` when flagged invalid."""
    if raw[0] & 0x80:
        return None
    minute, hour, day, month = raw[0] & 0x3F, raw[1] & 0x1F, raw[2] & 0x1F, raw[3] & 0x0F
    if not (minute < 60 and hour < 24 and 1 <= day <= 31 and 1 <= month <= 12):
        return None
    return f"{_year(raw[2] >> 5, raw[3] >> 4):04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00"
