"""What both 60 GHz vital-sign radar codecs (MR60BHA1, MR60BHA2) decode a frame into."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Value:
    """One value a frame carries: ``kind`` (presence, heart_rate, …), the value and its unit."""

    kind: str
    value: float | int | bool | None
    unit: str | None


class FrameScanner:
    """The stream loop both radars' parsers share: find a start byte, let the codec judge the frame there.

    Subclasses set :attr:`start_byte` and :meth:`check` (the codec's ``_check``: ``(frame, size, "")``,
    ``(None, needed, "")`` for "wait for more bytes", ``(None, offset, why)`` for "no frame here").
    A rejected candidate counts in the subclass's ``bad_<why>`` counter where it has one, and the
    scan moves on by one byte only, so a real frame starting inside a damaged one is still found.
    """

    start_byte: int

    def __init__(self) -> None:
        self.pending = bytearray()
        self.frames = 0
        self.skipped = 0

    def check(self, raw: bytearray, at: int) -> tuple[Any, int, str]:
        raise NotImplementedError

    def feed(self, data: bytes) -> list[Any]:
        """The complete frames that ``data`` finishes, in order."""
        buf = self.pending
        buf += data
        out: list[Any] = []
        at = 0
        while at < len(buf):
            start = buf.find(self.start_byte, at)
            if start < 0:
                self.skipped += len(buf) - at
                at = len(buf)
                break
            self.skipped += start - at
            at = start
            frame, size, why = self.check(buf, at)
            if frame is not None:
                out.append(frame)
                self.frames += 1
                at += size
            elif not why:
                break  # a frame may be starting here: wait for more bytes
            else:
                counter = f"bad_{why}"
                if hasattr(self, counter):
                    setattr(self, counter, getattr(self, counter) + 1)
                self.skipped += 1
                at += 1
        del buf[:at]
        return out
