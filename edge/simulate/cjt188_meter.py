"""A CJ/T 188 water meter (2004 or 2018 edition) for a :class:`~edge.simulate.line.SimulatedLine`.

The meter answers, as one on a real RS-485 / M-Bus line does:

* read data (C=01, DI 901F) to its own address, with the meter type byte its
  own type or the wildcard ``AA``: current volume, settlement-day volume,
  its clock and status bytes, DI in its edition's byte order, SER echoed;
* read address (C=03, DI 810A) to the broadcast address ``AA…AA`` (never with
  an error reply: on a broadcast every meter would answer at once);
* a DI it does not know: an error reply (C with D6 set: SER, ST0, ST1);
* 901F in the *other* edition's byte order: as ``other_order`` says —
  ``"ignore"`` (no answer, what most meters do with a DI they do not know),
  ``"error"`` (an error reply) or ``"answer"`` (a normal answer, DI in its own order);
* anything garbled, for another meter, or from another meter: nothing.

Requests may carry 0–4 ``FE`` wake-up bytes; answers carry ``preamble`` of them.
Frames are built with the codec's :func:`~drivers.codecs.cjt188.build_frame`;
the payload fields (BCD volumes, unit codes, clock, status) are laid out here
from the standard's field table, so decoding them with the codec tests it.

The volume grows with ``flow`` (L/min, a constant or a function of the seconds
since start, e.g. :func:`edge.simulate.water_use.household_use`); the
settlement-day volume is the register at the last :meth:`settle` (the start
value until then). The meter's clock is the gateway's wall clock in the
meter's time zone plus ``clock_offset_s`` (``None``: an unset, all-zero clock).

>>> from drivers.codecs.cjt188 import decode_read_data_reply, read_data_request
>>> meter = Cjt188WaterMeter("00000805000001", start_m3=123.4, unit=0x29)
>>> reading = decode_read_data_reply(meter.answer(read_data_request("00000805000001", ser=7)))
>>> reading.volume, reading.volume_unit, reading.volume_m3, reading.ser, reading.di_order
(123400.0, 'L', 123.4, 7, '2004')
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from drivers.codecs.cjt188 import (
    ADDRESS_DIGITS,
    BROADCAST,
    BROADCAST_ADDRESS,
    DI_READ_ADDRESS,
    DI_READ_DATA,
    ERROR_BIT,
    METER_TYPE_CODES,
    READ_ADDRESS,
    READ_DATA,
    REPLY_BIT,
    UNITS,
    Frame,
    build_frame,
    di_bytes,
    parse_frame,
)
from drivers.errors import FrameError
from edge.simulate.bcd import bcd_bytes
from edge.simulate.water_use import Flow, VolumeCounter

OTHER_ORDER_BEHAVIOURS = ("ignore", "error", "answer")
UNIT_L = 0x29
UNIT_M3 = 0x2C
#: ST0 bits 0–1 (valve: 00 open, 01 closed, 11 abnormal) and bit 2 (battery low), the standard's common layout.
_VALVE_OPEN, _VALVE_CLOSED = 0b00, 0b01
_BATTERY_LOW = 0b100
_BCD_DIGITS = 8  # 4-byte BCD volume: six integer digits and two decimals


def _other(di_order: str) -> str:
    return "2018" if di_order == "2004" else "2004"


class Cjt188WaterMeter:
    """One simulated meter; thread-safe (the line thread answers while a test changes its state)."""

    def __init__(
        self,
        address: str,
        meter_type: str = "cold_water",
        di_order: str = "2004",
        flow: Flow | float = 0.0,
        start_m3: float = 0.0,
        unit: int = UNIT_M3,
        valve_open: bool = True,
        battery_low: bool = False,
        clock_offset_s: float | None = 0.0,
        *,
        other_order: str = "ignore",
        preamble: int = 4,
        utc_offset_h: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if len(address) != ADDRESS_DIGITS or not address.isdigit() or not address.isascii():
            raise ValueError(f"address must be {ADDRESS_DIGITS} decimal digits, got {address!r}")
        if meter_type not in METER_TYPE_CODES:
            raise ValueError(f"meter_type must be one of {', '.join(METER_TYPE_CODES)}, got {meter_type!r}")
        if di_order not in ("2004", "2018"):
            raise ValueError(f"di_order must be '2004' or '2018', got {di_order!r}")
        if other_order not in OTHER_ORDER_BEHAVIOURS:
            raise ValueError(f"other_order must be one of {', '.join(OTHER_ORDER_BEHAVIOURS)}, got {other_order!r}")
        if unit not in UNITS:
            codes = ", ".join(f"{code:02X}" for code in UNITS)
            raise ValueError(f"unit must be a CJ/T 188 unit code ({codes}), got {unit!r}")
        if not 0 <= preamble <= 4:
            raise ValueError(f"preamble must be 0–4 FE bytes, got {preamble!r}")
        self.address = address
        self.meter_type = METER_TYPE_CODES[meter_type]
        self.di_order = di_order
        self.other_order = other_order
        self.unit = unit
        self.preamble = preamble
        self._zone = timezone(timedelta(hours=utc_offset_h))
        self._counter = VolumeCounter(start_m3, flow, clock=clock)
        self._lock = threading.Lock()
        self._settlement_m3: float | None = start_m3
        self._valve_open = valve_open
        self._battery_low = battery_low
        self._clock_offset_s = clock_offset_s
        self._raw_status: tuple[int, int] | None = None
        self._error_status: bytes | None = None

    # --- state a test or the demo changes ---------------------------------------------------------
    def volume_m3(self) -> float:
        """The register now, in m³."""
        return self._counter.m3()

    def set_flow(self, flow: Flow | float) -> None:
        """Change the use from now on (L/min, or a function of the seconds since start)."""
        self._counter.set_flow(flow)

    def settle(self) -> float:
        """A settlement day passes: the settlement volume becomes the register now; returns it."""
        volume = self.volume_m3()
        with self._lock:
            self._settlement_m3 = volume
        return volume

    def forget_settlement(self) -> None:
        """Play a meter without a settlement day: the field goes out filled with FF until :meth:`settle`."""
        with self._lock:
            self._settlement_m3 = None

    def set_valve(self, is_open: bool) -> None:
        with self._lock:
            self._valve_open = is_open

    def set_battery_low(self, low: bool) -> None:
        with self._lock:
            self._battery_low = low

    def set_clock_offset(self, seconds: float | None) -> None:
        """Let the meter's clock run ``seconds`` ahead of true time (negative: behind; None: unset)."""
        with self._lock:
            self._clock_offset_s = seconds

    def set_status_bytes(self, status: tuple[int, int] | None) -> None:
        """Send these raw ST0, ST1 instead of the valve/battery state (None: back to the state)."""
        with self._lock:
            self._raw_status = status

    def set_error_reply(self, status: bytes | None) -> None:
        """Answer every read-data with an error reply carrying ``status`` (ST0 ST1), until None."""
        with self._lock:
            self._error_status = status

    # --- the line ---------------------------------------------------------------------------------
    def answer(self, request: bytes) -> bytes | None:
        """The reply to one request off the line, or None when this meter stays silent."""
        try:
            frame = parse_frame(request)
        except FrameError:
            return None  # a garbled request is not answered: the master times out and asks again
        if frame.control & REPLY_BIT or frame.meter_type not in (self.meter_type, BROADCAST):
            return None
        if frame.address == BROADCAST_ADDRESS:
            return self._read_address(frame) if frame.control == READ_ADDRESS else None
        if frame.address != self.address:
            return None
        ser = frame.data[2] if len(frame.data) >= 3 else 0
        if frame.control != READ_DATA or len(frame.data) != 3:
            return self._error(frame.control, ser)
        order = self._order_asked(frame.data[:2], DI_READ_DATA)
        if order is None:
            return self._error(frame.control, ser)
        if order == "ignore":
            return None
        with self._lock:
            refused = self._error_status
        if refused is not None:
            return self._error(frame.control, ser, refused)
        return self._read_data(ser)

    def _order_asked(self, di: bytes, wanted: int) -> str | None:
        """How to treat DI ``di`` when ``wanted`` is the DI the meter knows.

        ``"own"``: ``wanted`` in this meter's byte order; ``"answer"`` or
        ``"ignore"``: in the other order, as ``other_order`` says; None: a DI
        the meter does not know (or the other order under ``"error"``).
        """
        if di == di_bytes(wanted, self.di_order):
            return "own"
        if di == di_bytes(wanted, _other(self.di_order)):
            return None if self.other_order == "error" else self.other_order
        return None

    def _read_address(self, frame: Frame) -> bytes | None:
        if len(frame.data) != 3:
            return None  # a broadcast is never answered with an error: every meter would shout at once
        order = self._order_asked(frame.data[:2], DI_READ_ADDRESS)
        if order in (None, "ignore"):
            return None
        payload = di_bytes(DI_READ_ADDRESS, self.di_order) + frame.data[2:3]
        return self._frame(READ_ADDRESS | REPLY_BIT, payload)

    def _read_data(self, ser: int) -> bytes | None:
        with self._lock:
            settlement, clock_offset = self._settlement_m3, self._clock_offset_s
            st0, st1 = self._status()
        payload = (di_bytes(DI_READ_DATA, self.di_order) + bytes([ser])
                   + self._volume_field(self.volume_m3()) + self._volume_field(settlement)
                   + self._clock_field(clock_offset) + bytes([st0, st1]))
        return self._frame(READ_DATA | REPLY_BIT, payload)

    def _error(self, control: int, ser: int, status: bytes | None = None) -> bytes:
        if status is None:
            with self._lock:
                status = bytes(self._status())
        return self._frame((control | REPLY_BIT | ERROR_BIT) & 0xFF, bytes([ser]) + status)

    def _frame(self, control: int, payload: bytes) -> bytes:
        return build_frame(self.meter_type, self.address, control, payload, preamble=self.preamble)

    # --- payload fields ---------------------------------------------------------------------------
    def _status(self) -> tuple[int, int]:
        """ST0, ST1; the caller holds the lock."""
        if self._raw_status is not None:
            return self._raw_status
        st0 = (_VALVE_OPEN if self._valve_open else _VALVE_CLOSED) | (_BATTERY_LOW if self._battery_low else 0)
        return st0, 0x00

    def _volume_field(self, m3: float | None) -> bytes:
        """Four BCD bytes (two decimals) and the unit code; a full register rolls over like the meter's wheels.

        A non-volume unit (a heat meter's kWh) shows the m³ figure as it is: the
        simulator then plays a meter that reports something other than volume.
        ``None`` is a field the meter leaves unfilled (FF FF FF FF).
        """
        if m3 is None:
            return b"\xff" * 4 + bytes([self.unit])
        unit = UNITS[self.unit]
        shown = m3 / unit.factor if unit.quantity == "volume" else m3
        # Truncated, as a register shows the last full step; the epsilon absorbs binary noise (12345 L = 12.345 m³).
        hundredths = math.floor(shown * 100 + 1e-6) % 10**_BCD_DIGITS
        return bcd_bytes(hundredths, 4) + bytes([self.unit])

    def _clock_field(self, offset_s: float | None) -> bytes:
        """ss mm hh DD MM YY CC in BCD, the meter's local time; all zero for an unset clock."""
        if offset_s is None:
            return bytes(7)
        now = datetime.now(self._zone) + timedelta(seconds=offset_s)
        fields = (now.second, now.minute, now.hour, now.day, now.month, now.year % 100, now.year // 100)
        return b"".join(bcd_bytes(value, 1) for value in fields)
