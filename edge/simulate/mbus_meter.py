"""A wired M-Bus water meter (EN 13757-2/-3) for a :class:`~edge.simulate.line.SimulatedLine`.

It answers like a real meter on a shared line, and ignores what is not for it:

- ``SND_NKE`` to its primary address (or 254, or 253 while selected): resets its link layer
  (frame-count bit, telegram sequence) and acknowledges with ``E5``; at 253 it also ends
  the selection. To 255 (broadcast, no reply) it resets silently.
- a secondary selection (``SND_UD``, CI 0x52, to 253) matching its id — digits ``F`` are
  wildcards, as are manufacturer, version and medium bytes ``FF`` — selects it and is
  acknowledged; any other selection deselects it, without an answer.
- ``REQ_UD2`` to its primary address (or 254, or 253 while selected): an ``RSP_UD`` long frame,
  CI 0x72, with a fixed header (id, manufacturer, version, medium water, access number, status)
  and the records a domestic water meter sends (see :meth:`MbusWaterMeter._records`). A repeated
  ``REQ_UD2`` with the same frame-count bit gets the same telegram again, byte for byte; with
  ``telegrams > 1`` the records are spread over that many telegrams, each but the last ending
  with DIF 0x1F ("more records follow"), the next one sent when the frame-count bit toggles.

The volume grows with ``flow`` (L/min, a constant or a function of seconds since start, e.g.
:func:`edge.simulate.water_use.household_use`).

>>> from drivers.codecs.mbus import decode_response
>>> from drivers.codecs.mbus_link import req_ud2, snd_nke
>>> meter = MbusWaterMeter(5, "12345678", start_m3=123.456)
>>> meter.answer(snd_nke(5)), meter.answer(snd_nke(6))
(b'\\xe5', None)
>>> answer = decode_response(meter.answer(req_ud2(5, fcb=True)))
>>> answer.header.id, answer.header.manufacturer, answer.header.medium
('12345678', 'LNL', 'water')
>>> [(r.quantity, r.value) for r in answer.records if r.quantity == "volume" and r.storage == 0]
[('volume', 123.456)]
"""

from __future__ import annotations

import collections
import datetime
import threading
import time
from typing import Callable

from drivers.codecs.mbus_link import (
    ACK,
    C_SND_NKE,
    CI_SELECT_SECONDARY,
    FCB,
    SECONDARY_ADDRESS,
    long_frame,
    manufacturer_code,
    parse_frame,
)
from drivers.errors import FrameError
from edge.simulate.bcd import bcd_bytes
from edge.simulate.water_use import Flow, VolumeCounter

BROADCAST_REPLY = 254
BROADCAST_NO_REPLY = 255
REPLIES_KEPT = 1000
MEDIUM_WATER = 0x07
CI_RSP_VARIABLE = 0x72
C_RSP_UD = 0x08

_REQ_UD2_MASK = 0xCF  # REQ_UD2 is 0x4B with the frame-count-valid (0x10) and frame-count (0x20) bits as they come
_REQ_UD2 = 0x4B
_FCV = 0x10
_SND_UD_MASK = 0xDF  # SND_UD is 0x53 with the frame-count bit as it comes
_SND_UD = 0x53
_MORE_RECORDS_FOLLOW = bytes((0x1F,))
_MAX_BCD8 = 99_999_999


# --- record encoding (EN 13757-3: DIF, VIF, data least significant byte first) ---------------------

def _int(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little", signed=True)


def _type_g(day: datetime.date) -> bytes:
    """A date as M-Bus type G: day and low year bits in the first byte, month and high year bits in the second.

    >>> _type_g(datetime.date(2026, 11, 1)).hex(" ")
    '41 3b'
    """
    year = day.year - 2000
    return bytes((day.day | (year & 0x07) << 5, day.month | (year >> 3) << 4))


# DIF codes used here: data field (low nibble), function (bits 4-5), storage bit 0 (bit 6).
_DIF_INT8, _DIF_INT16, _DIF_INT24, _DIF_INT32, _DIF_BCD8 = 0x01, 0x02, 0x03, 0x04, 0x0C
_FUNCTION_MAXIMUM = 0x10
_STORAGE_1 = 0x40
_VIF_VOLUME_L = 0x13  # 10^-3 m³
_VIF_FLOW_L_PER_H = 0x3B  # 10^-3 m³/h
_VIF_FLOW_TEMPERATURE = 0x5A  # 10^-1 °C
_VIF_ON_TIME_HOURS = 0x22
_VIF_DATE = 0x6C
_VIF_FABRICATION_NO = 0x78
_VIF_FD = 0xFD
_VIFE_ERROR_FLAGS = 0x17


class MbusWaterMeter:
    """One simulated meter; :meth:`answer` is called on the line's thread, the rest from anywhere."""

    def __init__(
        self,
        primary: int,
        secondary_id: str,
        *,
        manufacturer: str = "LNL",
        version: int = 1,
        flow: Flow | float = 0.0,
        start_m3: float = 0.0,
        settlement_m3: float | None = None,
        settlement_day: datetime.date | None = None,
        temperature_c: float = 14.5,
        on_hours: int = 8760,
        fabrication_no: int = 20240001,
        telegrams: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not (isinstance(primary, int) and 0 <= primary <= 250):
            raise ValueError(f"primary address must be 0–250, got {primary!r}")
        if not (isinstance(secondary_id, str) and len(secondary_id) == 8 and secondary_id.isdigit()):
            raise ValueError(f"secondary id must be 8 digits, got {secondary_id!r}")
        if not 0.0 <= start_m3 <= _MAX_BCD8 / 1000:
            raise ValueError(f"start_m3 must be 0–{_MAX_BCD8 / 1000:g} (8 BCD digits of litres), got {start_m3!r}")
        if telegrams < 1:
            raise ValueError(f"telegrams must be at least 1, got {telegrams!r}")
        self.primary = primary
        self.secondary_id = secondary_id
        self.manufacturer = manufacturer
        self._manufacturer_code = manufacturer_code(manufacturer)
        self.version = version
        self.temperature_c = temperature_c
        self.fabrication_no = fabrication_no
        self.telegrams = telegrams
        self.settlement_m3 = start_m3 if settlement_m3 is None else settlement_m3
        self.settlement_day = settlement_day or datetime.date.today().replace(day=1)
        #: Status byte of the fixed header (EN 13757-3: 0x04 power low, 0x08 permanent error, 0x10 temporary error).
        self.status = 0
        #: Value of the error-flags record (VIF 0xFD 0x17), one byte of meter-specific bits; 0 = no error.
        self.error_flags = 0
        self._clock = clock
        self._t0 = clock()
        self._on_hours = on_hours
        self._counter = VolumeCounter(start_m3, flow, clock=clock)
        self._flow: Flow = self._as_function(flow)
        self._peak_l_per_h = 0
        self._lock = threading.Lock()
        self._selected = False
        self._access_no = 0
        self._last_fcb: bool | None = None
        self._last_reply: bytes | None = None
        self._queued: list[list[bytes]] = []  # telegrams still to send of the current readout
        #: The last RSP_UDs sent, repeats included, oldest first (for tests; bounded for a long demo).
        self.replies: collections.deque[bytes] = collections.deque(maxlen=REPLIES_KEPT)

    # --- state a test or the demo may look at or change ----------------------------------------
    @staticmethod
    def _as_function(flow: Flow | float) -> Flow:
        return flow if callable(flow) else (lambda _t, rate=float(flow): rate)

    def set_flow(self, flow: Flow | float) -> None:
        """Change the water use from now on (L/min; a constant is a steady draw, e.g. a leak)."""
        with self._lock:
            self._counter.set_flow(flow)
            self._flow = self._as_function(flow)

    def volume_m3(self) -> float:
        """The register now, in m³ (to the litre)."""
        return self._counter.m3()

    @property
    def selected(self) -> bool:
        with self._lock:
            return self._selected

    # --- the line --------------------------------------------------------------------------------
    def answer(self, request: bytes) -> bytes | None:
        """The reply to one request seen on the line, or ``None`` when it is not for this meter."""
        try:
            frame = parse_frame(request)
        except FrameError:
            return None  # a meter ignores a request it cannot read; the master will time out and retry
        with self._lock:
            if frame.kind == "short" and frame.control == C_SND_NKE:
                return self._snd_nke(frame.address)
            if frame.kind == "short" and frame.control & _REQ_UD2_MASK == _REQ_UD2:
                if not self._addressed(frame.address):
                    return None
                return self._rsp_ud(bool(frame.control & _FCV), bool(frame.control & FCB))
            if (frame.kind == "long" and frame.control & _SND_UD_MASK == _SND_UD
                    and frame.address == SECONDARY_ADDRESS and frame.ci == CI_SELECT_SECONDARY):
                return self._select(frame.data)
        return None

    def _addressed(self, address: int) -> bool:
        return address in (self.primary, BROADCAST_REPLY) or (address == SECONDARY_ADDRESS and self._selected)

    def _snd_nke(self, address: int) -> bytes | None:
        if address == BROADCAST_NO_REPLY:
            self._reset_link()
            return None
        if not self._addressed(address):
            return None
        self._reset_link()
        if address == SECONDARY_ADDRESS:
            self._selected = False  # EN 13757-3: SND_NKE to 253 ends the selection
        return bytes((ACK,))

    def _reset_link(self) -> None:
        self._last_fcb = None
        self._last_reply = None
        self._queued = []

    def _select(self, data: bytes) -> bytes | None:
        self._selected = len(data) == 8 and self._matches(data)
        return bytes((ACK,)) if self._selected else None

    def _matches(self, data: bytes) -> bool:
        wanted = data[3::-1].hex().upper()  # id digits, most significant first
        if any(w not in ("F", own) for w, own in zip(wanted, self.secondary_id, strict=True)):
            return False
        man = int.from_bytes(data[4:6], "little")
        return (man in (0xFFFF, self._manufacturer_code) and data[6] in (0xFF, self.version)
                and data[7] in (0xFF, MEDIUM_WATER))

    def _rsp_ud(self, fcv: bool, fcb: bool) -> bytes:
        if fcv and fcb == self._last_fcb and self._last_reply is not None:
            reply = self._last_reply  # the master lost our answer and asks again: same telegram
        else:
            if fcv:
                self._last_fcb = fcb
            if not self._queued:
                self._queued = self._split(self._records())
            chunk = self._queued.pop(0)
            reply = self._frame(b"".join(chunk) + (_MORE_RECORDS_FOLLOW if self._queued else b""))
            self._last_reply = reply
        self.replies.append(reply)
        return reply

    def _split(self, records: list[bytes]) -> list[list[bytes]]:
        size = -(-len(records) // self.telegrams)
        return [records[i:i + size] for i in range(0, len(records), size)]

    def _frame(self, body: bytes) -> bytes:
        self._access_no = (self._access_no + 1) & 0xFF
        header = (bcd_bytes(int(self.secondary_id), 4) + self._manufacturer_code.to_bytes(2, "little")
                  + bytes((self.version, MEDIUM_WATER, self._access_no, self.status)) + b"\x00\x00")
        return long_frame(C_RSP_UD, self.primary, CI_RSP_VARIABLE, header + body)

    def _records(self) -> list[bytes]:
        """The data records of one readout, each as DIF [DIFE] VIF [VIFE] data bytes.

        Fabrication number (BCD), volume in litres (BCD), the settlement-day volume and its
        date (storage 1), volume flow in L/h and its peak so far (function maximum), flow
        temperature in 0.1 °C, on time in hours and the error flags.
        """
        elapsed = self._clock() - self._t0
        # Eight BCD digits of litres roll over at 100 000 m³, as the meter's register does.
        litres = round(self._counter.m3() * 1000) % (_MAX_BCD8 + 1)
        l_per_h = round(self._flow(elapsed) * 60)
        self._peak_l_per_h = max(self._peak_l_per_h, l_per_h)
        return [
            bytes((_DIF_BCD8, _VIF_FABRICATION_NO)) + bcd_bytes(self.fabrication_no, 4),
            bytes((_DIF_BCD8, _VIF_VOLUME_L)) + bcd_bytes(litres, 4),
            bytes((_STORAGE_1 | _DIF_BCD8, _VIF_VOLUME_L)) + bcd_bytes(round(self.settlement_m3 * 1000), 4),
            bytes((_STORAGE_1 | _DIF_INT16, _VIF_DATE)) + _type_g(self.settlement_day),
            bytes((_DIF_INT32, _VIF_FLOW_L_PER_H)) + _int(l_per_h, 4),
            bytes((_FUNCTION_MAXIMUM | _DIF_INT32, _VIF_FLOW_L_PER_H)) + _int(self._peak_l_per_h, 4),
            bytes((_DIF_INT16, _VIF_FLOW_TEMPERATURE)) + _int(round(self.temperature_c * 10), 2),
            bytes((_DIF_INT24, _VIF_ON_TIME_HOURS)) + _int(self._on_hours + int(elapsed // 3600), 3),
            bytes((_DIF_INT8, _VIF_FD, _VIFE_ERROR_FLAGS, self.error_flags & 0xFF)),
        ]
