"""MR60BHA2 (Seeed's XIAO 60 GHz breathing-and-heartbeat kit) "tiny frame" radar frames.

A frame on the UART (115200 Bd, 8N1) is ``01 ID(2) LEN(2) TYPE(2) HCK DATA DCK``:
the start byte ``01``, a frame counter, the data length and the frame type (all
big-endian), the header checksum HCK over the seven bytes before it, the data
and the data checksum DCK over the data. Both checksums are the inverted XOR
of the bytes they cover. Values inside the data are little-endian.

Sources: Seeed "Tiny Frame Interface – Breathing and Heartbeat" datasheet; the
ESPHome component ``seeed_mr60bha2`` (types 0x0A14 breathing rate, 0x0A15 heart
rate, 0x0A16 distance, 0x0F09 presence; float32 little-endian; HCK over bytes 0–6);
Seeed's Arduino library ``Seeed-mmWave-library`` (``SEEED_MR60BHA2::handleType``:
distance data is a uint32 range flag followed by a float32 distance).

The distance is published in cm, as ESPHome's component declares it. A
breathing or heart rate of 0 means the radar measures none (nobody still within
about 1.5 m); it is decoded as sent — what it means is the driver's business.

>>> frame = build_frame(0x0A15, struct.pack("<f", 72.5), frame_id=0x8000)
>>> frame.hex(" ")
'01 80 00 00 04 0a 15 65 00 00 91 42 2c'
>>> values(parse_frame(frame))
[Value(kind='heart_rate', value=72.5, unit='bpm')]
>>> parser = StreamParser()
>>> [f.type for f in parser.feed(b"\\x01\\x02" + frame + frame[:5])], parser.skipped, len(parser.pending)
([2581], 2, 5)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from drivers.codecs.vital_signs import FrameScanner, Value
from drivers.errors import FrameError

START = 0x01
#: Start, ID, LEN, TYPE and HCK: the bytes before the data.
HEADER_LENGTH = 8
#: The point-cloud reports (0x0A04) are the longest: 4 + 16 bytes per target, at most three targets
#: observed; 256 leaves room for other firmware and still stops noise with a huge length field
#: from holding back the real frames behind it.
MAX_DATA_LENGTH = 256
MAX_FRAME_LENGTH = HEADER_LENGTH + MAX_DATA_LENGTH + 1

BREATHING_RATE = 0x0A14
HEART_RATE = 0x0A15
DISTANCE = 0x0A16
PRESENCE = 0x0F09
#: Other types seen on the wire (not decoded into values): phases, point clouds, firmware version.
PHASES, POINT_CLOUD_TARGETS, POINT_CLOUD_DETECTION, FIRMWARE = 0x0A13, 0x0A04, 0x0A08, 0xFFFF


@dataclass(frozen=True)
class Frame:
    """One checked frame."""

    frame_id: int
    type: int
    data: bytes


def checksum(data: bytes) -> int:
    """Inverted XOR of ``data``.

    >>> hex(checksum(bytes.fromhex("01 69 75 00 04 0a 15")))
    '0xf9'
    """
    acc = 0
    for byte in data:
        acc ^= byte
    return ~acc & 0xFF


def build_frame(frame_type: int, data: bytes = b"", frame_id: int = 0) -> bytes:
    """A complete frame with both checksums (for simulators and tests)."""
    if len(data) > 0xFFFF:
        raise ValueError(f"MR60BHA2 data is at most 65535 bytes, got {len(data)}")
    head = bytes((START,)) + (frame_id & 0xFFFF).to_bytes(2, "big") + len(data).to_bytes(2, "big") \
        + frame_type.to_bytes(2, "big")
    return head + bytes((checksum(head),)) + data + bytes((checksum(data),))


def _check(raw: bytes, at: int = 0) -> tuple[Frame | None, int, str]:
    """Judge the bytes at ``raw[at:]``: ``(frame, length, "")``, ``(None, needed, "")`` when more
    bytes are needed, or ``(None, offset, why)`` when it is no frame (offset relative to ``at``)."""
    if raw[at] != START:
        return None, 0, "start"
    if len(raw) - at < HEADER_LENGTH:
        return None, HEADER_LENGTH, ""
    if raw[at + 7] != checksum(raw[at:at + 7]):
        return None, 7, "header_checksum"
    length = int.from_bytes(raw[at + 3:at + 5], "big")
    if length > MAX_DATA_LENGTH:
        return None, 3, "length"
    size = HEADER_LENGTH + length + 1
    if len(raw) - at < size:
        return None, size, ""
    data = bytes(raw[at + HEADER_LENGTH:at + size - 1])
    if raw[at + size - 1] != checksum(data):
        return None, size - 1, "data_checksum"
    frame_id = int.from_bytes(raw[at + 1:at + 3], "big")
    return Frame(frame_id, int.from_bytes(raw[at + 5:at + 7], "big"), data), size, ""


def _why(raw: bytes, at: int, offset: int, why: str) -> str:
    where = at + offset
    if why == "start":
        return f"expected the start byte 01 at byte {at}, got {raw[at]:02X}"
    if why == "header_checksum":
        return f"header checksum mismatch: frame says {raw[where]:02X}, header gives {checksum(raw[at:where]):02X}"
    if why == "length":
        return f"data length {int.from_bytes(raw[at + 3:at + 5], 'big')} is longer than any MR60BHA2 report " \
               f"({MAX_DATA_LENGTH} bytes)"
    return f"data checksum mismatch: frame says {raw[where]:02X}, data gives " \
           f"{checksum(raw[at + HEADER_LENGTH:where]):02X}"


def parse_frames(raw: bytes) -> list[Frame]:
    """Every frame of ``raw``, which must hold complete frames back to back and nothing else.

    Raises :class:`FrameError` whose offset is that of the first offending byte in ``raw``.
    """
    if not raw:
        raise FrameError("no bytes", offset=0)
    frames, at = [], 0
    while at < len(raw):
        frame, size, why = _check(raw, at)
        if frame is not None:
            frames.append(frame)
            at += size
        elif not why:
            raise FrameError(f"frame at byte {at} is cut short: {len(raw) - at} of {size} bytes", offset=len(raw))
        else:
            raise FrameError(_why(raw, at, size, why), offset=at + size)
    return frames


def parse_frame(raw: bytes) -> Frame:
    """Exactly one frame; :class:`FrameError` otherwise."""
    frames = parse_frames(raw)
    if len(frames) != 1:
        raise FrameError(f"{len(frames)} frames where one was expected", offset=HEADER_LENGTH + len(frames[0].data) + 1)
    return frames[0]


def float32(data: bytes) -> float | None:
    """A little-endian float32 as the shortest decimal that is the same float32 (72.3, not 72.30000305);
    ``None`` for NaN and infinities, which are no measurement.

    >>> float32(struct.pack("<f", 72.3)), float32(bytes.fromhex("0000c07f"))
    (72.3, None)
    """
    value = struct.unpack("<f", data[:4])[0]
    if not math.isfinite(value):
        return None
    for digits in range(1, 10):
        short = float(f"{value:.{digits}g}")
        try:
            if struct.unpack("<f", struct.pack("<f", short))[0] == value:
                return short
        except OverflowError:  # rounded up past the largest float32 (3.4e38 → 4e38): needs more digits
            continue
    return value


def _need(frame: Frame, size: int, what: str) -> None:
    if len(frame.data) < size:
        raise FrameError(f"{what} carries at least {size} data bytes, got {len(frame.data)}", offset=HEADER_LENGTH)


def values(frame: Frame) -> list[Value]:
    """The values ``frame`` reports (empty for types that report none of :data:`KINDS`).

    Raises :class:`FrameError` when a frame of a known type is too short for its value.
    """
    if frame.type == BREATHING_RATE:
        _need(frame, 4, "breathing rate")
        return [Value("breathing_rate", float32(frame.data), "1/min")]
    if frame.type == HEART_RATE:
        _need(frame, 4, "heart rate")
        return [Value("heart_rate", float32(frame.data), "bpm")]
    if frame.type == DISTANCE:
        _need(frame, 4, "distance")
        # Old firmware sends the 4-byte range flag alone (always 0 in the captures): no target, no distance.
        target = int.from_bytes(frame.data[:4], "little") != 0
        if not target or len(frame.data) < 8:
            return [Value("distance", None, "cm")]
        return [Value("distance", float32(frame.data[4:8]), "cm")]
    if frame.type == PRESENCE:
        _need(frame, 1, "presence")
        # Documented as one flag; firmware sends it in 1, 2 or 4 bytes little-endian.
        return [Value("presence", int.from_bytes(frame.data[:4], "little") != 0, None)]
    return []


#: Every kind :func:`values` can return, with its unit.
KINDS = {"presence": None, "distance": "cm", "heart_rate": "bpm", "breathing_rate": "1/min"}


class StreamParser(FrameScanner):
    """Frames out of a byte stream fed in chunks of any size.

    Frames are found by length; the header checksum is checked before the
    length is trusted. After anything that is no frame the parser moves on by
    one byte, so a real frame starting inside a damaged one is still found.
    At most :data:`MAX_FRAME_LENGTH` − 1 bytes are held between calls.

    A damaged length field holds back the frames behind it until enough bytes
    have arrived to disprove it: at most one longest frame's worth.

    Counters: ``frames`` good frames, ``bad_header_checksum``,
    ``bad_data_checksum``, ``bad_length`` rejected candidates, ``skipped`` bytes
    dropped in all.
    """

    start_byte = START

    def __init__(self) -> None:
        super().__init__()
        self.bad_header_checksum = 0
        self.bad_data_checksum = 0
        self.bad_length = 0

    @property
    def bad_checksum(self) -> int:
        """Candidates rejected by either checksum."""
        return self.bad_header_checksum + self.bad_data_checksum

    def check(self, raw: bytearray, at: int) -> tuple[Frame | None, int, str]:
        return _check(raw, at)
