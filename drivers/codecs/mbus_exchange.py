"""M-Bus request/answer exchanges over a byte link (EN 13757-2 link layer, master side).

Each exchange waits for the line to be quiet, discards stale input, sends one
request built by :mod:`drivers.codecs.mbus_link`, reads exactly one frame back
with :func:`receive_frame` and checks it with the codec. Works over any
:class:`drivers.codecs.ByteLink`; in practice :class:`drivers.transports.serial.SerialBus`.

Timing (EN 13757-2): a meter starts its answer within 330 bit times + 50 ms
after the request (188 ms at 2400 Bd). The link's ``timeout`` is how long the
first byte of an answer may take after the request was handed to the port —
which includes the request's own time on the wire (5 bytes: 23 ms at 2400 Bd,
a secondary selection 78 ms) — so 300 ms suits 2400 Bd. Once an answer has
started, the line may not fall silent for that long again before it is complete.

>>> from drivers.codecs.mbus_link import snd_nke
>>> class Canned:                       # a link whose meter always answers the same bytes
...     timeout = 0.3
...     def __init__(self, answer): self.answer, self.sent = bytearray(answer), []
...     def wait_frame_gap(self): pass
...     def reset_input_buffer(self): pass
...     def write(self, data): self.sent.append(bytes(data))
...     def read(self, n, timeout=None):
...         chunk = bytes(self.answer[:n]); del self.answer[:n]; return chunk
>>> send_nke(Canned(b"\\xe5"), 5)
>>> receive_frame(Canned(b"\\x00\\xff\\x10\\x7b\\x05\\x80\\x16")).hex(" ")   # line noise skipped
'10 7b 05 80 16'
>>> send_nke(Canned(b""), 5)
Traceback (most recent call last):
drivers.codecs.mbus_exchange.AnswerTimeout: no answer from M-Bus address 5 within 0.3 s
"""

from __future__ import annotations

from drivers.codecs import ByteLink, mbus_link
from drivers.codecs.mbus import Response, decode_response
from drivers.codecs.mbus_link import ACK, LONG_START, SECONDARY_ADDRESS, SHORT_START, STOP, checksum, parse_frame
from drivers.errors import FrameError, TransportTimeout

#: Bytes that cannot start a frame (line noise, the tail of a collision) skipped before giving up.
MAX_NOISE_BYTES = 64

#: The control field of RSP_UD is 0x08; a meter may add ACD (0x20, class-1 data waiting) and DFC (0x10, busy).
_RSP_UD = 0x08
_RSP_UD_FLAGS = 0x30
_LONG_HEADER = 3  # L, L, second 0x68 after the first start byte


class AnswerTimeout(TransportTimeout):
    """No complete frame arrived in time; ``received`` holds the bytes that did (possibly none)."""

    def __init__(self, message: str, received: bytes):
        super().__init__(message)
        self.received = received


def describe(address: int) -> str:
    """How a request's target is named in messages.

    >>> describe(5), describe(253)
    ('M-Bus address 5', 'the M-Bus meter selected at address 253')
    """
    if address == SECONDARY_ADDRESS:
        return "the M-Bus meter selected at address 253"
    return f"M-Bus address {address}"


class _Reader:
    """Reads from a link, with a push-back buffer for bytes that turned out not to start a frame.

    Every read waits at most ``timeout``, always the same value: changing a serial port's
    timeout reconfigures the tty, which costs time — and fails on a pseudo-terminal with
    parity, which refuses the parity bit it is asked to keep.
    """

    def __init__(self, link: ByteLink, timeout: float):
        self.link = link
        self.timeout = timeout
        self.pending = bytearray()
        self.received = bytearray()  # everything taken from the link, for messages

    def take(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only when the line stayed silent for ``timeout``."""
        data = bytearray(self.pending[:n])
        del self.pending[:n]
        while len(data) < n:
            # A long answer takes longer than the timeout on the wire (95 bytes: 435 ms at 2400 Bd):
            # keep reading while bytes keep coming.
            fresh = self.link.read(n - len(data), self.timeout)
            if not fresh:
                break
            self.received += fresh
            data += fresh
        return bytes(data)

    def push_back(self, data: bytes) -> None:
        self.pending[:0] = data


def receive_frame(link: ByteLink, timeout: float | None = None, *, source: str = "the M-Bus device") -> bytes:
    """Read exactly one M-Bus frame: an ACK (``E5``), a short frame (5 bytes) or a long/control frame.

    The first byte must arrive within ``timeout`` (default: the link's), and the line may not
    fall silent that long inside the frame. Bytes that cannot start a frame are skipped, at most
    :data:`MAX_NOISE_BYTES`: anything but E5, 10 or 68; a 10 whose checksum and stop byte do not
    follow; a 68 not followed by ``L L 68``. A long frame is returned as read; checking its
    checksum and stop byte is :func:`drivers.codecs.mbus_link.parse_frame`'s job.

    Raises :class:`AnswerTimeout` (a :class:`TransportTimeout`) when nothing or only part of a
    frame arrived in time, :class:`FrameError` when only noise arrived.
    """
    reader = _Reader(link, link.timeout if timeout is None else timeout)
    skipped = 0
    while True:
        start = reader.take(1)
        if not start:
            raise _timeout(source, reader, skipped)
        if start[0] == ACK:
            return start
        if start[0] == SHORT_START:
            rest = _rest(reader, 4, start, source, "5")
            if rest[3] == STOP and rest[2] == checksum(rest[:2]):
                return start + rest
            # A 0x10 in line noise: the four bytes after it may hold the real start.
            reader.push_back(rest)
        if start[0] == LONG_START:
            header = _rest(reader, _LONG_HEADER, start, source, "at least 9")
            length = header[0]
            if header[1] == length and header[2] == LONG_START and length >= 3:
                return start + header + _rest(reader, length + 2, start + header, source, str(length + 6))
            # 68 L L 68 is a strong pattern; without it this 0x68 was noise: look again from the next byte.
            reader.push_back(header)
        skipped += 1
        if skipped > MAX_NOISE_BYTES:
            raise FrameError(
                f"{source} sent {MAX_NOISE_BYTES}+ bytes without an M-Bus frame start (0xE5, 0x10 or 0x68)"
                " — line noise, two meters answering at once, or the wrong baud rate", offset=0)


def _rest(reader: _Reader, n: int, so_far: bytes, source: str, total: str) -> bytes:
    data = reader.take(n)
    if len(data) < n:
        partial = so_far + data
        shown = partial[:16].hex(" ") + (" …" if len(partial) > 16 else "")
        raise AnswerTimeout(
            f"{source} sent {len(partial)} of {total} bytes of a frame ({shown}), then nothing within"
            f" {reader.timeout:g} s", bytes(reader.received))
    return data


def _timeout(source: str, reader: _Reader, skipped: int) -> AnswerTimeout:
    if skipped:
        return AnswerTimeout(
            f"no M-Bus frame from {source} within {reader.timeout:g} s, only {skipped}"
            f" byte{'s' if skipped > 1 else ''} of line noise"
            f" ({bytes(reader.received[:16]).hex(' ')})", bytes(reader.received))
    return AnswerTimeout(f"no answer from {source} within {reader.timeout:g} s", b"")


def _exchange(link: ByteLink, request: bytes, source: str) -> bytes:
    """Send ``request`` on a quiet line and return the one frame that answers it."""
    link.wait_frame_gap()  # 3.5 characters, more than the 11 bit times EN 13757-2 asks before a new request
    link.reset_input_buffer()
    link.write(request)
    frame = receive_frame(link, source=source)
    if frame == request:
        # Some level converters echo what the master sends; a meter never answers with the request itself.
        frame = receive_frame(link, source=source)
    return frame


def send_nke(link: ByteLink, address: int) -> None:
    """SND_NKE: reset the link layer (frame-count bit, multi-telegram position) of the meter at ``address``.

    At address 253 it also ends the selection of a secondary-addressed meter.
    """
    source = describe(address)
    frame = _exchange(link, mbus_link.snd_nke(address), source)
    _expect_ack(frame, source, "SND_NKE")


def select_secondary(
    link: ByteLink,
    secondary_id: str,
    manufacturer: str | None = None,
    version: int | None = None,
    medium: int | None = None,
) -> bool:
    """Select the meter with this 8-digit id (F = wildcard digit) for address 253.

    ``True`` when a meter acknowledged; ``False`` when none answered (no such meter). Any other
    meter that was selected is deselected by the same request.
    """
    request = mbus_link.select_secondary(secondary_id, manufacturer, version, medium)
    source = f"M-Bus meter {secondary_id}"
    try:
        frame = _exchange(link, request, source)
    except AnswerTimeout as exc:
        if exc.received:
            raise
        return False
    _expect_ack(frame, source, "its selection")
    return True


def request_ud2(link: ByteLink, address: int, fcb: bool) -> Response:
    """REQ_UD2 with frame-count bit ``fcb``; the decoded RSP_UD.

    The answer must be a long frame with control field RSP_UD and, for a primary address
    (0–250), come from that address; anything else is a :class:`FrameError`.
    """
    source = describe(address)
    frame = _exchange(link, mbus_link.req_ud2(address, fcb), source)
    parsed = _parse(frame, source)
    if parsed.kind != "long":
        what = "an ACK (E5)" if parsed.kind == "ack" else f"a {parsed.kind} frame"
        raise FrameError(f"{source} answered REQ_UD2 with {what} instead of its data (RSP_UD)", offset=0)
    if parsed.control & ~_RSP_UD_FLAGS != _RSP_UD:
        raise FrameError(
            f"{source} answered REQ_UD2 with control field 0x{parsed.control:02X}, not RSP_UD (0x08)", offset=4)
    if address <= mbus_link.MAX_PRIMARY_ADDRESS and parsed.address != address:
        raise FrameError(
            f"answer to REQ_UD2 for M-Bus address {address} came from address {parsed.address}"
            " — two meters share an address, or a late answer from another meter", offset=5)
    try:
        return decode_response(frame)
    except FrameError as exc:
        raise _broken(source, exc) from exc


def _parse(frame: bytes, source: str) -> mbus_link.Frame:
    try:
        return parse_frame(frame)
    except FrameError as exc:
        raise _broken(source, exc) from exc


def _broken(source: str, exc: FrameError) -> FrameError:
    return FrameError(f"{source} answered with a broken frame: {exc}", offset=exc.offset)


def _expect_ack(frame: bytes, source: str, what: str) -> None:
    if frame != bytes((ACK,)):
        kind = _parse(frame, source).kind
        raise FrameError(f"{source} answered {what} with a {kind} frame instead of an ACK (E5)", offset=0)
