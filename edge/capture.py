"""Frames in a sniffer's capture: where each protocol's frames start, and which bytes lie outside any frame.

A capture rarely starts at a frame: the sniffer was switched on mid-frame, the line
carries wake-up bytes, echoes or noise. :class:`CaptureScanner` walks the bytes as the
drivers' stream parser does (:class:`drivers.codecs.vital_signs.FrameScanner`): at each
position the protocol's *judge* says "a frame of N bytes", "maybe a frame: wait for more
bytes" or "no frame here"; after "no frame" the scan moves on by one byte only, so a real
frame that starts inside a damaged one is still found. Unlike the driver's parser it
records where every frame began, and the ranges it skipped.

The judges use the codecs' own checks:

* **MR60BHA1, MR60BHA2**: the radar stream parsers' ``check``, as the drivers run it;
* **M-Bus**: the frame starts :func:`drivers.codecs.mbus_exchange.receive_frame` accepts
  (``10`` + checksum + ``16``, ``68 L L 68``), then :func:`drivers.codecs.mbus_link.parse_frame`.
  A lone ``E5`` (ACK) counts only right after another frame — the answer to a request the
  sniffer also saw; anywhere else it is one noise byte in 256;
* **CJ/T 188**: up to four ``FE`` wake-up bytes, ``68`` and the length at byte 10 (as
  :func:`drivers.codecs.cjt188_exchange.receive_frame` reads), then :func:`drivers.codecs.cjt188.parse_frame`;
* **Modbus RTU**: a unit 1–247 and a register read (3 or 4), at each of the lengths a
  request, an answer or an exception can have, kept when its CRC holds
  (:func:`edge.decode.decode_modbus`).

The scanner is fed in pieces of any size and holds at most one longest frame between feeds.

>>> scanner = CaptureScanner("mbus")
>>> [(f.offset, f.raw.hex(" ")) for f in scanner.feed(bytes.fromhex("00 10 7B 05"))]
[]
>>> [(f.offset, f.raw.hex(" ")) for f in scanner.feed(bytes.fromhex("80 16 E5 FF"))]
[(1, '10 7b 05 80 16'), (6, 'e5')]
>>> scanner.finish(), scanner.skipped
([], [(0, 1), (7, 1)])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from drivers.codecs import cjt188, mbus_link, mr60bha1, mr60bha2
from drivers.errors import DeviceFault, FrameError

#: A judge's answer at a position: ``(size, True)`` a frame of ``size`` bytes, ``(needed, False)`` wait
#: until ``needed`` bytes are there, ``(0, False)`` no frame starts here.
Judgement = tuple[int, bool]
NO_FRAME: Judgement = (0, False)


class Found(NamedTuple):
    """A frame of the capture: its offset in the capture and its bytes."""

    offset: int
    raw: bytes


def _radar(codec) -> Callable[[bytearray, int, bool], Judgement]:
    parser = codec.StreamParser()

    def judge(buf: bytearray, at: int, _after_frame: bool) -> Judgement:
        frame, size, why = parser.check(buf, at)
        if frame is not None:
            return size, True
        return (size or 1, False) if not why else NO_FRAME
    return judge


def _mbus(buf: bytearray, at: int, after_frame: bool) -> Judgement:
    start, available = buf[at], len(buf) - at
    if start == mbus_link.ACK:
        return (1, True) if after_frame else NO_FRAME
    if start == mbus_link.SHORT_START:
        size = 5
    elif start == mbus_link.LONG_START:
        if available < 4:
            return 4, False
        if buf[at + 1] != buf[at + 2] or buf[at + 3] != mbus_link.LONG_START or buf[at + 1] < 3:
            return NO_FRAME
        size = buf[at + 1] + 6
    else:
        return NO_FRAME
    return _checked(buf, at, size, mbus_link.parse_frame)


def _cjt188(buf: bytearray, at: int, _after_frame: bool) -> Judgement:
    start = at
    while start < len(buf) and buf[start] == cjt188.PREAMBLE_BYTE and start - at < cjt188.MAX_PREAMBLE:
        start += 1
    if start == len(buf):
        return start - at + cjt188.HEADER_LENGTH, False
    if buf[start] != cjt188.START:
        return NO_FRAME
    if len(buf) - start < cjt188.HEADER_LENGTH:
        return start - at + cjt188.HEADER_LENGTH, False
    return _checked(buf, at, start - at + cjt188.MIN_FRAME_LENGTH + buf[start + cjt188.HEADER_LENGTH - 1],
                    cjt188.parse_frame)


def _modbus(buf: bytearray, at: int, _after_frame: bool) -> Judgement:
    from edge.decode import decode_modbus

    if len(buf) - at < 3:
        return 3, False
    unit, function = buf[at], buf[at + 1]
    if not 1 <= unit <= 247 or function & 0x7F not in (3, 4):
        return NO_FRAME
    sizes = (5,) if function & 0x80 else (5 + buf[at + 2], 8)
    waiting = 0
    for size in sizes:
        judged = _checked(buf, at, size, decode_modbus)
        if judged[1]:
            return judged
        waiting = max(waiting, judged[0])
    return waiting, False


def _checked(buf: bytearray, at: int, size: int, check: Callable[[bytes], object]) -> Judgement:
    """A frame of ``size`` bytes at ``at`` if ``check`` accepts it; wait when the bytes are not all there."""
    if len(buf) - at < size:
        return size, False
    try:
        check(bytes(buf[at:at + size]))
    except DeviceFault:
        pass            # a well-formed error answer is a frame
    except FrameError:
        return NO_FRAME
    return size, True


JUDGES: dict[str, Callable[[], Callable[[bytearray, int, bool], Judgement]]] = {
    "mbus": lambda: _mbus,
    "cjt188": lambda: _cjt188,
    "modbus": lambda: _modbus,
    "mr60bha1": lambda: _radar(mr60bha1),
    "mr60bha2": lambda: _radar(mr60bha2),
}


class CaptureScanner:
    """Frames of ``protocol`` out of a capture fed in pieces; :attr:`skipped` lists ``(offset, length)`` ranges."""

    def __init__(self, protocol: str):
        self._judge = JUDGES[protocol]()
        self._pending = bytearray()
        self._base = 0                 # the capture offset of _pending[0]
        self._after_frame = False      # the last thing seen was a frame's end
        self.skipped: list[tuple[int, int]] = []
        self.size = 0

    def feed(self, data: bytes) -> list[Found]:
        """The frames that ``data`` completes, in order."""
        self._pending += data
        self.size += len(data)
        return self._scan(final=False)

    def finish(self) -> list[Found]:
        """The end of the capture: a frame still waiting for bytes is none; what is left was skipped."""
        return self._scan(final=True)

    def _scan(self, *, final: bool) -> list[Found]:
        buf, found, at = self._pending, [], 0
        while at < len(buf):
            size, is_frame = self._judge(buf, at, self._after_frame)
            if is_frame:
                found.append(Found(self._base + at, bytes(buf[at:at + size])))
                at += size
                self._after_frame = True
            elif size and not final:
                break          # a frame may be starting here: wait for more bytes
            else:
                self._skip(self._base + at)
                at += 1
                self._after_frame = False
        del buf[:at]
        self._base += at
        return found

    def _skip(self, offset: int) -> None:
        if self.skipped and sum(self.skipped[-1]) == offset:
            first, length = self.skipped[-1]
            self.skipped[-1] = (first, length + 1)
        else:
            self.skipped.append((offset, 1))
