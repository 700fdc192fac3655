"""CJ/T 188 (2004 and 2018 editions) household-meter frames: build requests, check and decode replies.

A frame on the wire is ``FE…FE 68 T A0…A6 C L DATA CS 16``: 0–4 ``FE`` wake-up
bytes, the start byte, the meter type, a 14-digit BCD address with A0 least
significant, the control code, the data length, the data, the checksum (sum of
every byte from the ``68`` through the data, mod 256) and the stop byte.

The two editions differ, for read-data, in the byte order of the data
identifier: the 2004 edition sends ``90 1F``, the 2018 edition ``1F 90``.

>>> read_data_request("78330011223344", di_order="2018", preamble=2).hex(" ")
'fe fe 68 10 44 33 22 11 00 33 78 01 03 1f 90 00 80 16'
>>> reading = decode_read_data_reply(bytes.fromhex(
...     "68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C 31 01 22 11 05 15 20 21 84 13 16"))
>>> reading.volume, reading.volume_unit, reading.clock, reading.di_order, reading.status.valve
(556677.0, 'm³', '2015-05-11T22:01:31', '2018', 'closed')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from drivers.errors import DeviceFault, FrameError

PREAMBLE_BYTE = 0xFE
START = 0x68
STOP = 0x16
MAX_PREAMBLE = 4
ADDRESS_LENGTH = 7
ADDRESS_DIGITS = 2 * ADDRESS_LENGTH
#: Address (and meter type) that every meter on the bus answers to.
BROADCAST = 0xAA
BROADCAST_ADDRESS = "AA" * ADDRESS_LENGTH
#: 68 T A0…A6 C L — the bytes before the data.
HEADER_LENGTH = 11
#: Header plus CS and the stop byte: a frame with no data.
MIN_FRAME_LENGTH = HEADER_LENGTH + 2

METER_TYPES = {
    0x10: "cold_water",
    0x11: "hot_water",
    0x12: "drinking_water",
    0x13: "reclaimed_water",
    0x20: "heat",
    0x21: "cooling",
    0x30: "gas",
    0x40: "electricity",
}
METER_TYPE_CODES = {name: code for code, name in METER_TYPES.items()}

READ_DATA = 0x01
READ_ADDRESS = 0x03
#: D7 marks a reply (slave → master), D6 an error reply.
REPLY_BIT = 0x80
ERROR_BIT = 0x40

DI_READ_DATA = 0x901F
DI_READ_ADDRESS = 0x810A
DI_ORDERS = ("2004", "2018")

# 901F water reply data: DI(2) SER(1) volume(4)+unit(1) settlement volume(4)+unit(1) clock(7) ST(2).
READ_DATA_REPLY_LENGTH = 22
READ_ADDRESS_REPLY_LENGTH = 3


@dataclass(frozen=True)
class Unit:
    """A CJ/T 188 unit code: its symbol, and how to bring a value to the base unit of its quantity.

    ``name`` is the symbol in plain ASCII (``m3``, ``L*10``), for JSON and logs.
    """

    symbol: str
    quantity: str
    base: str
    factor: float
    name: str = ""


# CJ/T 188 unit-code table. Codes step by one per decade within a family (Wh 02 … MWh×100 0A),
# which is where L×10/L×100 (2A/2B) and m³×10/m³×100 (2D/2E) sit.
UNITS = {
    0x01: Unit("J", "energy", "kWh", 1 / 3_600_000, "J"),
    0x02: Unit("Wh", "energy", "kWh", 0.001, "Wh"),
    0x05: Unit("kWh", "energy", "kWh", 1.0, "kWh"),
    0x08: Unit("MWh", "energy", "kWh", 1000.0, "MWh"),
    0x0A: Unit("MWh×100", "energy", "kWh", 100_000.0, "MWh*100"),
    0x0B: Unit("kJ", "energy", "kWh", 1 / 3600, "kJ"),
    0x0E: Unit("MJ", "energy", "kWh", 1 / 3.6, "MJ"),
    0x11: Unit("GJ", "energy", "kWh", 1000 / 3.6, "GJ"),
    0x13: Unit("GJ×100", "energy", "kWh", 100_000 / 3.6, "GJ*100"),
    0x14: Unit("W", "power", "kW", 0.001, "W"),
    0x17: Unit("kW", "power", "kW", 1.0, "kW"),
    0x1A: Unit("MW", "power", "kW", 1000.0, "MW"),
    0x29: Unit("L", "volume", "m3", 0.001, "L"),
    0x2A: Unit("L×10", "volume", "m3", 0.01, "L*10"),
    0x2B: Unit("L×100", "volume", "m3", 0.1, "L*100"),
    0x2C: Unit("m³", "volume", "m3", 1.0, "m3"),
    0x2D: Unit("m³×10", "volume", "m3", 10.0, "m3*10"),
    0x2E: Unit("m³×100", "volume", "m3", 100.0, "m3*100"),
    0x32: Unit("L/h", "flow", "m3/h", 0.001, "L/h"),
    0x35: Unit("m³/h", "flow", "m3/h", 1.0, "m3/h"),
}


class CJT188Fault(DeviceFault):
    """The meter answered with an error reply (control code with D6 set).

    ``status`` holds the bytes the meter put after the serial number — its
    status/error bytes — so a technician can look them up in the meter's manual.
    """

    def __init__(self, message: str, control: int, status: bytes):
        super().__init__(message)
        self.control = control
        self.status = status


@dataclass(frozen=True)
class Frame:
    """One checked CJ/T 188 frame."""

    meter_type: int
    address: str
    control: int
    data: bytes
    #: Index of the ``68`` start byte in the bytes parsed (the number of ``FE`` before it).
    start: int = 0

    @property
    def meter_type_name(self) -> str:
        """``cold_water``, ``heat``, … or ``type_0xNN`` for a code the standard does not name."""
        return METER_TYPES.get(self.meter_type, f"type_0x{self.meter_type:02X}")


@dataclass(frozen=True)
class StatusMapping:
    """Where a meter keeps its valve and battery bits in ST0/ST1 (vendors differ).

    The default is the common reading of the standard: ST0 bits 0–1 valve
    (00 open, 01 closed, 11 abnormal), ST0 bit 2 battery low.
    """

    valve_byte: int = 0
    valve_shift: int = 0
    valve_mask: int = 0b11
    valve_states: dict[int, str] = field(default_factory=lambda: {0b00: "open", 0b01: "closed", 0b11: "abnormal"})
    battery_byte: int = 0
    battery_bit: int = 2

    def __post_init__(self):
        for name in ("valve_byte", "battery_byte"):
            if getattr(self, name) not in (0, 1):
                raise ValueError(f"{name} must be 0 (ST0) or 1 (ST1), got {getattr(self, name)!r}")
        if not 0 <= self.battery_bit <= 7 or not 0 <= self.valve_shift <= 7:
            raise ValueError("status bit positions must be 0–7")


@dataclass(frozen=True)
class Status:
    """The two status bytes and what the mapping reads in them."""

    st0: int
    st1: int
    valve: str
    battery_low: bool


@dataclass(frozen=True)
class WaterReading:
    """The 901F water payload of a read-data reply."""

    meter_type: int
    address: str
    control: int
    di_order: str
    ser: int
    volume: float
    volume_unit: str
    volume_m3: float | None
    #: ``None`` (and ``settlement_volume_m3`` too) when the meter fills the field with non-BCD bytes
    #: (``FF FF FF FF``) or an unknown unit code: meters without a settlement day do, and their
    #: current volume is still good.
    settlement_volume: float | None
    settlement_volume_unit: str
    settlement_volume_m3: float | None
    #: ISO 8601 local time of the meter, or None when the meter sends an unset (all-zero) clock or
    #: one that is no date (``FF``…, second 60): a meter without a working clock still reads volume.
    clock: str | None
    status: Status


def _bcd_byte(value: int, offset: int) -> int:
    high, low = value >> 4, value & 0x0F
    if high > 9 or low > 9:
        raise FrameError(f"byte {value:02X} at offset {offset} is not BCD", offset=offset)
    return 10 * high + low


def bcd_to_int(data: bytes, offset: int = 0) -> int:
    """The number in little-endian BCD ``data`` (first byte least significant); ``offset`` places errors.

    >>> bcd_to_int(bytes.fromhex("00 77 66 55"))
    55667700
    """
    value = 0
    for index in range(len(data) - 1, -1, -1):
        value = 100 * value + _bcd_byte(data[index], offset + index)
    return value


def address_to_bytes(address: str) -> bytes:
    """A0…A6 for a 14-digit address string (most significant digit first), or the broadcast ``AA``×7.

    >>> address_to_bytes("12345678901234").hex(" ")
    '34 12 90 78 56 34 12'
    """
    if address.upper() == BROADCAST_ADDRESS:
        return bytes([BROADCAST] * ADDRESS_LENGTH)
    if len(address) != ADDRESS_DIGITS or not address.isdigit() or not address.isascii():
        raise ValueError(f"a CJ/T 188 address is {ADDRESS_DIGITS} decimal digits, got {address!r}")
    return bytes.fromhex(address)[::-1]


def address_from_bytes(data: bytes, offset: int = 0) -> str:
    """The 14-digit address string of A0…A6 (``AAAAAAAAAAAAAA`` for broadcast)."""
    if data == bytes([BROADCAST] * ADDRESS_LENGTH):
        return BROADCAST_ADDRESS
    for index, value in enumerate(data):
        _bcd_byte(value, offset + index)
    return data[::-1].hex()


def checksum(data: bytes) -> int:
    """Sum of ``data`` mod 256 — pass the bytes from the ``68`` through the data."""
    return sum(data) & 0xFF


def di_bytes(di: int, di_order: str) -> bytes:
    """The two DI bytes as the given edition sends them.

    >>> di_bytes(0x901F, "2004").hex(" "), di_bytes(0x901F, "2018").hex(" ")
    ('90 1f', '1f 90')
    """
    if di_order == "2004":
        return di.to_bytes(2, "big")
    if di_order == "2018":
        return di.to_bytes(2, "little")
    raise ValueError(f"di_order must be '2004' or '2018', got {di_order!r}")


def build_frame(meter_type: int, address: str, control: int, data: bytes = b"", preamble: int = MAX_PREAMBLE) -> bytes:
    """A complete frame with ``preamble`` wake-up ``FE`` bytes in front."""
    if not 0 <= preamble <= MAX_PREAMBLE:
        raise ValueError(f"preamble must be 0–{MAX_PREAMBLE} FE bytes, got {preamble!r}")
    if not 0 <= meter_type <= 0xFF or not 0 <= control <= 0xFF:
        raise ValueError(f"meter type and control code are single bytes, got {meter_type!r} and {control!r}")
    if len(data) > 0xFF:
        raise ValueError(f"data may hold at most 255 bytes, got {len(data)}")
    body = bytes([START, meter_type]) + address_to_bytes(address) + bytes([control, len(data)]) + bytes(data)
    return bytes([PREAMBLE_BYTE] * preamble) + body + bytes([checksum(body), STOP])


def _check_ser(ser: int) -> None:
    if not 0 <= ser <= 0xFF:
        raise ValueError(f"SER is one byte (0–255), got {ser!r}")


def read_data_request(
    address: str, meter_type: int = 0x10, ser: int = 0, di_order: str = "2004", preamble: int = MAX_PREAMBLE
) -> bytes:
    """The read-data request (control 0x01, DI 0x901F) in the byte order of ``di_order``."""
    _check_ser(ser)
    return build_frame(meter_type, address, READ_DATA, di_bytes(DI_READ_DATA, di_order) + bytes([ser]), preamble)


def read_address_request(
    ser: int = 0, di_order: str = "2004", meter_type: int = BROADCAST, preamble: int = MAX_PREAMBLE
) -> bytes:
    """The read-address request (control 0x03, DI 0x810A) to the broadcast address — one meter on the bus only.

    >>> read_address_request(preamble=0).hex(" ")
    '68 aa aa aa aa aa aa aa aa 03 03 81 0a 00 49 16'
    """
    _check_ser(ser)
    return build_frame(meter_type, BROADCAST_ADDRESS, READ_ADDRESS, di_bytes(DI_READ_ADDRESS, di_order) + bytes([ser]),
                       preamble)


def parse_frame(raw: bytes) -> Frame:
    """Check ``raw`` (wake-up bytes allowed in front) and split it into its fields.

    Raises :class:`FrameError` with the offset (into ``raw``) of the first bad
    byte: more than four ``FE``, no start byte, truncated or overlong frame,
    wrong checksum, missing stop byte, non-BCD address.
    """
    start = 0
    while start < len(raw) and raw[start] == PREAMBLE_BYTE:
        start += 1
    if start > MAX_PREAMBLE:
        raise FrameError(f"{start} FE wake-up bytes, at most {MAX_PREAMBLE} allowed", offset=MAX_PREAMBLE)
    if start == len(raw):
        raise FrameError("no frame after the wake-up bytes", offset=start)
    if raw[start] != START:
        raise FrameError(f"frame starts with {raw[start]:02X}, not 68", offset=start)
    if len(raw) - start < MIN_FRAME_LENGTH:
        raise FrameError(f"frame truncated: {len(raw) - start} bytes, a frame has at least {MIN_FRAME_LENGTH}",
                         offset=len(raw))
    length = raw[start + 10]
    end = start + MIN_FRAME_LENGTH + length
    if len(raw) < end:
        raise FrameError(f"frame truncated: L={length} needs {end - start} bytes, got {len(raw) - start}",
                         offset=len(raw))
    if len(raw) > end:
        raise FrameError(f"frame too long: {len(raw) - end} byte(s) after the stop byte", offset=end)
    cs_at = end - 2
    computed = checksum(raw[start:cs_at])
    if raw[cs_at] != computed:
        raise FrameError(f"checksum mismatch: frame carries {raw[cs_at]:02X}, contents give {computed:02X}",
                         offset=cs_at)
    if raw[end - 1] != STOP:
        raise FrameError(f"frame ends with {raw[end - 1]:02X}, not 16", offset=end - 1)
    return Frame(
        meter_type=raw[start + 1],
        address=address_from_bytes(raw[start + 2:start + 9], offset=start + 2),
        control=raw[start + 9],
        data=bytes(raw[start + HEADER_LENGTH:cs_at]),
        start=start,
    )


def _check_reply(frame: Frame, request_control: int, expected_length: int, address: str | None) -> None:
    """Raise for an error reply, or for a reply that does not answer the request."""
    if address is not None and address.upper() != BROADCAST_ADDRESS and frame.address != address:
        raise FrameError(f"reply came from meter {frame.address}, but {address} was asked", offset=frame.start + 2)
    if frame.control & ERROR_BIT:
        status = frame.data[1:] if len(frame.data) > 1 else frame.data
        shown = status.hex(" ") or "none"
        raise CJT188Fault(
            f"meter {frame.address} answered with error reply C={frame.control:02X}, status {shown}",
            control=frame.control,
            status=status,
        )
    if frame.control != request_control | REPLY_BIT:
        raise FrameError(
            f"control code {frame.control:02X} does not answer request {request_control:02X}", offset=frame.start + 9)
    if len(frame.data) != expected_length:
        raise FrameError(f"reply carries {len(frame.data)} data bytes, {expected_length} expected",
                         offset=frame.start + 10)


def detect_di_order(data: bytes, di: int, di_order: str = "auto", offset: int = 0) -> str:
    """The edition (``"2004"`` or ``"2018"``) whose byte order of ``di`` starts ``data``.

    ``di_order`` ``"auto"`` accepts either; ``"2004"``/``"2018"`` accept only that one.

    >>> detect_di_order(bytes.fromhex("90 1f 00"), 0x901F)
    '2004'
    """
    if di_order not in (*DI_ORDERS, "auto"):
        raise ValueError(f"di_order must be '2004', '2018' or 'auto', got {di_order!r}")
    for order in DI_ORDERS if di_order == "auto" else (di_order,):
        if data[:2] == di_bytes(di, order):
            return order
    wanted = "either byte order" if di_order == "auto" else f"the {di_order} byte order"
    raise FrameError(f"reply DI {data[:2].hex(' ')} is not {di:04X} in {wanted}", offset=offset)


def meter_clock(data: bytes) -> str | None:
    """The 7-byte BCD clock (ss mm hh DD MM YY CC) as ISO 8601, or ``None`` when it is unset or not a date.

    >>> meter_clock(bytes.fromhex("31 01 22 11 05 15 20")), meter_clock(bytes(7)), meter_clock(bytes.fromhex("ff" * 7))
    ('2015-05-11T22:01:31', None, None)
    """
    if len(data) != 7 or not any(data):
        return None
    try:
        second, minute, hour, day, month, year_low, century = (_bcd_byte(b, 0) for b in data)
        return datetime(100 * century + year_low, month, day, hour, minute, second).isoformat()
    except (FrameError, ValueError):
        return None


def decode_status(st0: int, st1: int, mapping: StatusMapping = StatusMapping()) -> Status:
    """Valve state and battery flag from ST0/ST1 under ``mapping``.

    >>> decode_status(0x05, 0x00)
    Status(st0=5, st1=0, valve='closed', battery_low=True)
    """
    st = (st0, st1)
    valve_bits = (st[mapping.valve_byte] >> mapping.valve_shift) & mapping.valve_mask
    valve = mapping.valve_states.get(valve_bits, f"unknown_{valve_bits:b}")
    return Status(st0=st0, st1=st1, valve=valve, battery_low=bool(st[mapping.battery_byte] >> mapping.battery_bit & 1))


def _volume(data: bytes, offset: int) -> tuple[float, str, float | None]:
    """Value (2 decimals), unit symbol and value in m³ (None when the unit is not a volume)."""
    value = bcd_to_int(data[:4], offset) / 100
    code = data[4]
    unit = UNITS.get(code)
    if unit is None:
        raise FrameError(f"unknown unit code {code:02X}", offset=offset + 4)
    return value, unit.symbol, (round(value * unit.factor, 6) if unit.quantity == "volume" else None)


def _settlement(data: bytes, offset: int) -> tuple[float | None, str, float | None]:
    """Like :func:`_volume`, but a field the meter leaves unfilled (non-BCD, or no unit we know) is ``None``."""
    unit = UNITS.get(data[4])
    if unit is None or not all(b >> 4 <= 9 and b & 0x0F <= 9 for b in data[:4]):
        return None, unit.symbol if unit else "", None
    return _volume(data, offset)


def decode_read_data_reply(
    raw: bytes,
    address: str | None = None,
    di_order: str = "auto",
    ser: int | None = None,
    status_mapping: StatusMapping = StatusMapping(),
) -> WaterReading:
    """Check a reply to :func:`read_data_request` and decode its 901F water payload.

    ``address``/``ser`` given: the reply must echo them. ``di_order`` ``"auto"``
    takes the DI in either byte order and reports which in ``di_order`` of the
    result. Raises :class:`CJT188Fault` for an error reply and
    :class:`FrameError` for anything that is not a well-formed answer to the request.
    """
    frame = parse_frame(raw)
    _check_reply(frame, READ_DATA, READ_DATA_REPLY_LENGTH, address)
    at = frame.start + HEADER_LENGTH
    data = frame.data
    order = detect_di_order(data, DI_READ_DATA, di_order, offset=at)
    if ser is not None and data[2] != ser:
        raise FrameError(f"reply SER {data[2]} does not match request SER {ser}", offset=at + 2)
    volume, volume_unit, volume_m3 = _volume(data[3:8], at + 3)
    settlement, settlement_unit, settlement_m3 = _settlement(data[8:13], at + 8)
    return WaterReading(
        meter_type=frame.meter_type,
        address=frame.address,
        control=frame.control,
        di_order=order,
        ser=data[2],
        volume=volume,
        volume_unit=volume_unit,
        volume_m3=volume_m3,
        settlement_volume=settlement,
        settlement_volume_unit=settlement_unit,
        settlement_volume_m3=settlement_m3,
        clock=meter_clock(data[13:20]),
        status=decode_status(data[20], data[21], status_mapping),
    )


def decode_read_address_reply(raw: bytes, di_order: str = "auto", ser: int | None = None) -> str:
    """The address of the meter that answered :func:`read_address_request`.

    >>> decode_read_address_reply(bytes.fromhex("68 10 01 00 00 05 08 00 00 83 03 81 0A 00 97 16"))
    '00000805000001'
    """
    frame = parse_frame(raw)
    _check_reply(frame, READ_ADDRESS, READ_ADDRESS_REPLY_LENGTH, None)
    at = frame.start + HEADER_LENGTH
    detect_di_order(frame.data, DI_READ_ADDRESS, di_order, offset=at)
    if ser is not None and frame.data[2] != ser:
        raise FrameError(f"reply SER {frame.data[2]} does not match request SER {ser}", offset=at + 2)
    if frame.address == BROADCAST_ADDRESS:
        raise FrameError("read-address reply carries the broadcast address, not the meter's", offset=frame.start + 2)
    return frame.address
