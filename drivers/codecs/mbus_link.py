"""M-Bus link layer (EN 13757-2): ACK, short, control and long frames, and the master's requests.

>>> snd_nke(5).hex(" ")
'10 40 05 45 16'
>>> parse_frame(bytes.fromhex("10 7b 05 80 16"))
Frame(kind='short', control=123, address=5, ci=None, data=b'')
>>> parse_frame(bytes.fromhex("10 7b 05 81 16"))
Traceback (most recent call last):
drivers.errors.FrameError: M-Bus checksum is 0x81, expected 0x80
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.errors import FrameError

ACK = 0xE5
SHORT_START = 0x10
LONG_START = 0x68
STOP = 0x16

C_SND_NKE = 0x40
C_SND_UD = 0x53
#: REQ_UD2 with the frame-count-valid bit; the frame-count bit (0x20) is added per request.
C_REQ_UD2 = 0x5B
FCB = 0x20
CI_SELECT_SECONDARY = 0x52

#: The address a meter answers on once it was selected by its secondary address.
SECONDARY_ADDRESS = 253
BROADCAST_ADDRESSES = (254, 255)
MAX_PRIMARY_ADDRESS = 250


@dataclass(frozen=True)
class Frame:
    """One link-layer frame; ``ci`` and ``data`` are set only for control and long frames."""

    kind: str  # "ack", "short", "control" or "long"
    control: int | None = None
    address: int | None = None
    ci: int | None = None
    data: bytes = b""


def checksum(body: bytes) -> int:
    """Arithmetic sum of C, A, CI and data, modulo 256."""
    return sum(body) & 0xFF


def _check_address(address: int) -> None:
    valid = isinstance(address, int) and (
        0 <= address <= MAX_PRIMARY_ADDRESS or address == SECONDARY_ADDRESS or address in BROADCAST_ADDRESSES
    )
    if not valid:
        raise ValueError(f"M-Bus address must be 0–250 (primary), 253 (selected secondary) or 254/255, got {address!r}")


def short_frame(control: int, address: int) -> bytes:
    """``10 C A CS 16``."""
    _check_address(address)
    return bytes((SHORT_START, control, address, checksum(bytes((control, address))), STOP))


def long_frame(control: int, address: int, ci: int, data: bytes = b"") -> bytes:
    """``68 L L 68 C A CI data CS 16`` (a control frame when ``data`` is empty)."""
    _check_address(address)
    body = bytes((control, address, ci)) + bytes(data)
    if len(body) > 255:
        raise ValueError(f"M-Bus long frame carries at most 252 data bytes, got {len(data)}")
    return bytes((LONG_START, len(body), len(body), LONG_START)) + body + bytes((checksum(body), STOP))


def snd_nke(address: int) -> bytes:
    """SND_NKE: reset the meter's link layer (its frame-count bit) at ``address``."""
    return short_frame(C_SND_NKE, address)


def req_ud2(address: int, fcb: bool) -> bytes:
    """REQ_UD2: ask ``address`` for class-2 user data, with the frame-count bit ``fcb``.

    >>> req_ud2(1, fcb=True).hex(" "), req_ud2(1, fcb=False).hex(" ")
    ('10 7b 01 7c 16', '10 5b 01 5c 16')
    """
    return short_frame(C_REQ_UD2 | (FCB if fcb else 0), address)


class FrameCountBit:
    """The master's frame-count bit for one meter.

    After SND_NKE the first REQ_UD2 carries FCB=1; the bit toggles only after
    an answered request, so a repeat after a lost answer carries the same bit
    and the meter resends the same telegram instead of the next one.

    >>> fcb = FrameCountBit()
    >>> fcb.value, fcb.answered(), fcb.value, fcb.answered()
    (True, None, False, None)
    """

    def __init__(self) -> None:
        self.value = True

    def reset(self) -> None:
        """Call after sending SND_NKE."""
        self.value = True

    def answered(self) -> None:
        """Call after a REQ_UD2 was answered with a valid frame."""
        self.value = not self.value


def _bcd_id(secondary_id: str) -> bytes:
    if not isinstance(secondary_id, str) or len(secondary_id) != 8:
        raise ValueError(f"secondary address must be 8 digits (F as wildcard), got {secondary_id!r}")
    digits = secondary_id.upper()
    if any(c not in "0123456789F" for c in digits):
        raise ValueError(f"secondary address must be 8 digits (F as wildcard), got {secondary_id!r}")
    # Least significant digit pair first, as the meter sends its own id.
    return bytes(int(digits[i : i + 2], 16) for i in range(6, -1, -2))


def manufacturer_code(letters: str) -> int:
    """The 2-byte code of a three-letter manufacturer id (EN 62056-21 flag).

    >>> hex(manufacturer_code("EFE"))
    '0x14c5'
    """
    if not isinstance(letters, str) or len(letters) != 3 or not all("A" <= c <= "Z" for c in letters.upper()):
        raise ValueError(f"manufacturer must be three letters A–Z, got {letters!r}")
    a, b, c = (ord(ch) - 64 for ch in letters.upper())
    return (a << 10) | (b << 5) | c


def select_secondary(
    secondary_id: str, manufacturer: str | None = None, version: int | None = None, medium: int | None = None
) -> bytes:
    """SND_UD with CI 0x52 to address 253: select the meter with this id; ``None`` fields are wildcards (0xFF).

    >>> select_secondary("12345678").hex(" ")
    '68 0b 0b 68 53 fd 52 78 56 34 12 ff ff ff ff b2 16'
    """
    man = b"\xff\xff" if manufacturer is None else manufacturer_code(manufacturer).to_bytes(2, "little")
    for name, byte in (("version", version), ("medium", medium)):
        if byte is not None and not (isinstance(byte, int) and 0 <= byte <= 0xFF):
            raise ValueError(f"{name} must be 0–255 or None (wildcard), got {byte!r}")
    tail = bytes((0xFF if version is None else version, 0xFF if medium is None else medium))
    return long_frame(C_SND_UD, SECONDARY_ADDRESS, CI_SELECT_SECONDARY, _bcd_id(secondary_id) + man + tail)


def parse_frame(frame: bytes) -> Frame:
    """Check and split one complete frame; :class:`FrameError` carries the offset of the first bad byte."""
    frame = bytes(frame)
    if not frame:
        raise FrameError("empty M-Bus frame", offset=0)
    start = frame[0]
    if start == ACK:
        _check_end(frame, 1)
        return Frame("ack")
    if start == SHORT_START:
        _need(frame, 5)
        _check_sum_and_stop(frame, 1, 3)
        _check_end(frame, 5)
        return Frame("short", control=frame[1], address=frame[2])
    if start == LONG_START:
        _need(frame, 4)
        length = frame[1]
        if frame[2] != length:
            raise FrameError(f"M-Bus length bytes differ: 0x{length:02X} and 0x{frame[2]:02X}", offset=2)
        if frame[3] != LONG_START:
            raise FrameError(f"M-Bus second start byte is 0x{frame[3]:02X}, expected 0x68", offset=3)
        if length < 3:
            raise FrameError(f"M-Bus length field {length} is below 3 (C, A and CI)", offset=1)
        _need(frame, length + 6)
        _check_sum_and_stop(frame, 4, 4 + length)
        _check_end(frame, length + 6)
        kind = "control" if length == 3 else "long"
        return Frame(kind, control=frame[4], address=frame[5], ci=frame[6], data=frame[7 : 4 + length])
    raise FrameError(f"M-Bus frame starts with 0x{start:02X}, not 0xE5, 0x10 or 0x68", offset=0)


def _need(frame: bytes, size: int) -> None:
    if len(frame) < size:
        raise FrameError(f"M-Bus frame truncated: {len(frame)} bytes, expected {size}", offset=len(frame))


def _check_sum_and_stop(frame: bytes, body_start: int, cs_at: int) -> None:
    expected = checksum(frame[body_start:cs_at])
    if frame[cs_at] != expected:
        raise FrameError(f"M-Bus checksum is 0x{frame[cs_at]:02X}, expected 0x{expected:02X}", offset=cs_at)
    if frame[cs_at + 1] != STOP:
        raise FrameError(f"M-Bus stop byte is 0x{frame[cs_at + 1]:02X}, expected 0x16", offset=cs_at + 1)


def _check_end(frame: bytes, size: int) -> None:
    if len(frame) > size:
        raise FrameError(f"{len(frame) - size} unexpected byte(s) after the M-Bus frame", offset=size)
