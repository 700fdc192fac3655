"""MR60BHA1 (MicRadar R60A family, sold by Seeed) 60 GHz breathing-and-heartbeat radar frames.

A frame on the UART (115200 Bd, 8N1) is ``53 59 CTRL CMD LEN_H LEN_L DATA SUM 54 43``:
a two-byte header, the control word (what subsystem), the command word (what
value), the data length big-endian, the data, a checksum (low byte of the sum
of every byte from the ``53`` through the data) and the ``54 43`` tail.

Sources: Seeed "MR60BHA1 60GHz mmWave Module – Respiratory Heartbeat Detection,
Sensor User Manual" V1.9 (frame layout, checksum, control/command words), and
the constants of Seeed's Arduino library (github.com/limengdu/Seeed-Studio-MR60BHA1-Sensor,
``60ghzbreathheart.h``: 0x80 presence 01/02/03/04, 0x81 breathing 02, 0x85 heart
rate 02, 0x84 sleep 01/02; distance in cm, big-endian).

What the radar *reports* (see :data:`KINDS`): presence (0x80 0x01), movement
(0x80 0x02), distance (0x80 0x04), breathing rate (0x81 0x02), heart rate
(0x85 0x02), in/out of bed (0x84 0x01) and sleep state (0x84 0x02). Answers to
queries carry the same data under the command word with bit 7 set (``80 81`` for
a presence query). Everything else (waveforms, body-movement parameter,
orientation, sleep reports) is a valid frame without one of those values.

>>> frame = parse_frame(bytes.fromhex("53 59 85 02 00 01 59 8d 54 43"))
>>> frame.control, frame.command, frame.data.hex(), values(frame)
(133, 2, '59', [Value(kind='heart_rate', value=89, unit='bpm')])
>>> build_frame(0x80, 0x04, bytes.fromhex("00 23")).hex(" ")
'53 59 80 04 00 02 00 23 55 54 43'
>>> parser = StreamParser()
>>> [values(f) for f in parser.feed(bytes.fromhex("ff 53 59 80 01 00 01 01 2f 54 43 53"))]
[[Value(kind='presence', value=True, unit=None)]]
>>> parser.skipped, len(parser.pending)
(1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.codecs.vital_signs import FrameScanner, Value
from drivers.errors import FrameError

HEADER = b"\x53\x59"
TAIL = b"\x54\x43"
#: Header, control, command and the two length bytes: what precedes the data.
PREFIX_LENGTH = 6
#: Prefix plus checksum and tail: a frame with no data.
MIN_FRAME_LENGTH = PREFIX_LENGTH + 3
#: No report the manual lists carries more than 20 data bytes (the sleep-quality summary has 12); a
#: longer length field is line noise that happened to follow ``53 59``, and waiting for it would
#: delay the real frames behind it.
MAX_DATA_LENGTH = 64
MAX_FRAME_LENGTH = MIN_FRAME_LENGTH + MAX_DATA_LENGTH
#: Set in the command word of the radar's answer to a query.
QUERY_REPLY_BIT = 0x80

PRESENCE, MOTION, BODY_MOVEMENT, DISTANCE, ORIENTATION = 0x01, 0x02, 0x03, 0x04, 0x05
HUMAN = 0x80
BREATH = 0x81
SLEEP = 0x84
HEART = 0x85
RATE = 0x02
IN_BED, SLEEP_STATE = 0x01, 0x02

#: Movement codes (0x80 0x02), published as these numbers.
MOVEMENT_NAMES = {0: "none", 1: "stationary", 2: "active"}
#: Sleep-state codes (0x84 0x02); 3 ("none", real-time mode) is published as null.
SLEEP_STATE_NAMES = {0: "deep_sleep", 1: "light_sleep", 2: "awake"}
_SLEEP_STATE_NONE = 3
_IN_BED_NONE = 2

#: Query asking the radar for its presence state (answered with ``80 81``), from the manual's command table.
QUERY_PRESENCE = bytes.fromhex("53 59 80 81 00 01 0f bd 54 43")


@dataclass(frozen=True)
class Frame:
    """One checked frame: control word, command word and data."""

    control: int
    command: int
    data: bytes


def checksum(body: bytes) -> int:
    """Low byte of the sum of ``body`` (header through data).

    >>> hex(checksum(bytes.fromhex("53 59 85 02 00 01 59")))
    '0x8d'
    """
    return sum(body) & 0xFF


def build_frame(control: int, command: int, data: bytes = b"") -> bytes:
    """A complete frame with length, checksum and tail (for simulators and tests)."""
    if len(data) > 0xFFFF:
        raise ValueError(f"MR60BHA1 data is at most 65535 bytes, got {len(data)}")
    body = HEADER + bytes((control, command)) + len(data).to_bytes(2, "big") + data
    return body + bytes((checksum(body),)) + TAIL


def _check(raw: bytes, at: int = 0) -> tuple[Frame | None, int, str]:
    """Judge the bytes at ``raw[at:]``: ``(frame, length, "")``, ``(None, needed, "")`` when more
    bytes are needed, or ``(None, offset, why)`` when it is no frame (offset relative to ``at``)."""
    available = len(raw) - at
    if available < 2:
        return (None, 2, "") if raw[at:] == HEADER[:available] else (None, 0, "header")
    if raw[at:at + 2] != HEADER:
        return None, 0 if raw[at] != HEADER[0] else 1, "header"
    if available < PREFIX_LENGTH:
        return None, PREFIX_LENGTH, ""
    length = int.from_bytes(raw[at + 4:at + 6], "big")
    if length > MAX_DATA_LENGTH:
        return None, 4, "length"
    size = MIN_FRAME_LENGTH + length
    if available < size:
        return None, size, ""
    end = at + PREFIX_LENGTH + length
    if raw[end] != checksum(raw[at:end]):
        return None, PREFIX_LENGTH + length, "checksum"
    if raw[end + 1:end + 3] != TAIL:
        return None, PREFIX_LENGTH + length + 1 + (raw[end + 1] == TAIL[0]), "tail"
    return Frame(raw[at + 2], raw[at + 3], bytes(raw[at + PREFIX_LENGTH:end])), size, ""


def _why(raw: bytes, at: int, offset: int, why: str) -> str:
    where = at + offset
    if why == "header":
        return f"expected the frame header 53 59 at byte {at}, got {raw[at:at + 2].hex(' ')}"
    if why == "length":
        return f"data length {int.from_bytes(raw[at + 4:at + 6], 'big')} is longer than any MR60BHA1 report " \
               f"({MAX_DATA_LENGTH} bytes)"
    if why == "checksum":
        return f"checksum mismatch: frame says {raw[where]:02X}, bytes sum to {checksum(raw[at:where]):02X}"
    end = at + PREFIX_LENGTH + int.from_bytes(raw[at + 4:at + 6], "big")
    return f"frame does not end with 54 43 but {raw[end + 1:end + 3].hex(' ')}"


def parse_frames(raw: bytes) -> list[Frame]:
    """Every frame of ``raw``, which must hold complete frames back to back and nothing else.

    Raises :class:`FrameError` whose offset is that of the first offending byte in ``raw``.
    """
    frames, at = [], 0
    if not raw:
        raise FrameError("no bytes", offset=0)
    while at < len(raw):
        frame, size, why = _check(raw, at)
        if frame is not None:
            frames.append(frame)
            at += size
            continue
        if not why:
            raise FrameError(f"frame at byte {at} is cut short: {len(raw) - at} of {size} bytes", offset=len(raw))
        raise FrameError(_why(raw, at, size, why), offset=at + size)
    return frames


def parse_frame(raw: bytes) -> Frame:
    """Exactly one frame; :class:`FrameError` otherwise."""
    frames = parse_frames(raw)
    if len(frames) != 1:
        first_end = MIN_FRAME_LENGTH + len(frames[0].data)
        raise FrameError(f"{len(frames)} frames where one was expected", offset=first_end)
    return frames[0]


def _one_byte(frame: Frame, what: str) -> int:
    if len(frame.data) != 1:
        raise FrameError(f"{what} carries 1 data byte, got {len(frame.data)}", offset=PREFIX_LENGTH)
    return frame.data[0]


def _code(frame: Frame, what: str, codes: dict[int, object]) -> object:
    # A code the manual does not list (early firmware sends 03 for "disorderly motion") is no state we
    # know: null, never a guess.
    return codes.get(_one_byte(frame, what))


def values(frame: Frame) -> list[Value]:
    """The values ``frame`` reports (empty for frames that report none of :data:`KINDS`).

    A state code the manual does not list is ``None``. Raises :class:`FrameError` when a frame of a known
    kind has another data length than the manual's (a heart-rate frame with two bytes).
    """
    command = frame.command & ~QUERY_REPLY_BIT
    key = (frame.control, command)
    if key == (HUMAN, PRESENCE):
        return [Value("presence", _code(frame, "presence", {0: False, 1: True}), None)]
    if key == (HUMAN, MOTION):
        return [Value("movement", _code(frame, "movement", {code: code for code in MOVEMENT_NAMES}), None)]
    if key == (HUMAN, DISTANCE):
        if len(frame.data) != 2:
            raise FrameError(f"distance carries 2 data bytes, got {len(frame.data)}", offset=PREFIX_LENGTH)
        return [Value("distance", int.from_bytes(frame.data, "big"), "cm")]
    if key == (HEART, RATE):
        return [Value("heart_rate", _one_byte(frame, "heart rate"), "bpm")]
    if key == (BREATH, RATE):
        return [Value("breathing_rate", _one_byte(frame, "breathing rate"), "1/min")]
    if key == (SLEEP, IN_BED):
        return [Value("in_bed", _code(frame, "in-bed", {0: False, 1: True, _IN_BED_NONE: None}), None)]
    if key == (SLEEP, SLEEP_STATE):
        states = {code: code for code in SLEEP_STATE_NAMES} | {_SLEEP_STATE_NONE: None}
        return [Value("sleep_state", _code(frame, "sleep state", states), None)]
    return []


#: Every kind :func:`values` can return, with its unit.
KINDS = {"presence": None, "movement": None, "distance": "cm", "heart_rate": "bpm", "breathing_rate": "1/min",
         "in_bed": None, "sleep_state": None}


class StreamParser(FrameScanner):
    """Frames out of a byte stream fed in chunks of any size.

    Frames are found by length (never by searching for the tail). After
    anything that is no frame — noise, a bad checksum, a wrong tail, an
    impossible length — the parser moves on by one byte only, so a real frame
    that starts inside the damaged one is still found. At most
    :data:`MAX_FRAME_LENGTH` − 1 bytes are held between calls.

    A damaged length field holds back the frames behind it until enough bytes
    have arrived to disprove it: at most one longest frame's worth.

    Counters: ``frames`` good frames, ``bad_checksum``, ``bad_tail``,
    ``bad_length`` rejected candidates, ``skipped`` bytes dropped in all.
    """

    start_byte = HEADER[0]

    def __init__(self) -> None:
        super().__init__()
        self.bad_checksum = 0
        self.bad_tail = 0
        self.bad_length = 0

    def check(self, raw: bytearray, at: int) -> tuple[Frame | None, int, str]:
        return _check(raw, at)
