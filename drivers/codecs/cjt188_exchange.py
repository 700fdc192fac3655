"""One CJ/T 188 request and its answer over a byte link (in practice a serial port on an RS-485 or M-Bus line).

:mod:`drivers.codecs.cjt188` builds and checks frames; this module sends a
request and receives the frame that answers it:

* wait for line silence, drop stale input, send the request;
* skip the meter's ``FE`` wake-up bytes (and a little line noise) up to the
  ``68`` start byte, read the 11-byte header ``68 T A0…A6 C L``, then ``L``
  data bytes, the checksum and the stop byte;
* ignore frames that do not answer *this* request — a late answer to an
  earlier one (another meter's address, or this meter's previous SER), or our
  own request echoed by an adapter — and keep listening for the real answer;
* decode the answer with the codec, which checks the address, DI, length,
  SER and turns an error reply (D6 set) into :class:`~drivers.codecs.cjt188.CJT188Fault`.

SER is the request's sequence number: the meter echoes it, so a late answer
to the previous request is never taken for the answer to this one. Some
meters answer every request with the same SER: when the only answer from the
meter asked carries another SER, it is taken after all (at the end of the
timeout), and a driver that sees this stops checking SER for that meter
(``ser=None``) — a slightly old reading is better than never reading it.

>>> from drivers.codecs.cjt188 import build_frame
>>> from drivers.transports.serial import SerialBus
>>> answer = build_frame(0x10, "00000805000001", 0x83, bytes.fromhex("81 0a 00"), preamble=2)
>>> with SerialBus("loop", {"port": "loop://", "timeout": 0.1}) as loop:   # what is written is read back
...     loop.write(answer)
...     first = receive_frame(loop, 0.1)
...     try:
...         receive_frame(loop, 0.1, meter="00000805000001")
...     except TransportTimeout as nothing_more:
...         print(nothing_more)
no answer from CJ/T 188 meter 00000805000001 within 0.1 s
>>> first.hex(" ")   # the FE wake-up bytes are skipped
'68 10 01 00 00 05 08 00 00 83 03 81 0a 00 97 16'
"""

from __future__ import annotations

from drivers.codecs import ByteLink
from drivers.codecs.cjt188 import (
    BROADCAST,
    BROADCAST_ADDRESS,
    ERROR_BIT,
    HEADER_LENGTH,
    MAX_PREAMBLE,
    REPLY_BIT,
    START,
    CJT188Fault,
    Frame,
    StatusMapping,
    WaterReading,
    decode_read_address_reply,
    decode_read_data_reply,
    parse_frame,
    read_address_request,
    read_data_request,
)
from drivers.errors import FrameError, TransportTimeout

#: Bytes tolerated before the ``68`` start byte: wake-up ``FE``s plus some line noise
#: (a long M-Bus/RS-485 line often delivers a few junk bytes when the meter's driver switches on).
MAX_LEADING_BYTES = 32
#: Frames that do not answer the request (late answers, echoes) ignored while waiting for one that does.
MAX_IGNORED_FRAMES = 4
#: The standard's common layout of the status bytes (valve ST0 bits 0–1, battery ST0 bit 2).
DEFAULT_STATUS_MAPPING = StatusMapping()


def _meter_text(meter: str | None) -> str:
    return "any CJ/T 188 meter" if meter is None else f"CJ/T 188 meter {meter}"


def receive_frame(link: ByteLink, timeout: float, meter: str | None = None) -> bytes:
    """The next frame on ``link``, from its ``68`` start byte through its ``16`` stop byte (not yet checked).

    ``FE`` wake-up bytes and up to :data:`MAX_LEADING_BYTES` bytes of noise
    before the start byte are skipped. Each read — the first byte, the rest
    of the header, the data — may take up to ``timeout``. ``meter`` (the
    address asked) only names the meter in error messages.

    Raises :class:`TransportTimeout` when nothing, or only part of a frame,
    arrived in time (saying how many bytes), :class:`FrameError` when the
    noise before a start byte goes on for too long.
    """
    who = _meter_text(meter)
    leading = bytearray()
    while True:
        byte = link.read(1, timeout)
        if not byte:
            if not leading:
                raise TransportTimeout(f"no answer from {who} within {timeout:g} s")
            raise TransportTimeout(
                f"{who} sent {len(leading)} byte(s) but no frame start (68) within {timeout:g} s: {leading.hex(' ')}")
        if byte[0] == START:
            break
        leading += byte
        if len(leading) > MAX_LEADING_BYTES:
            raise FrameError(f"{who} sent {len(leading)} bytes without a frame start (68): {leading[:16].hex(' ')} …",
                             offset=len(leading))
    header = byte + link.read(HEADER_LENGTH - 1, timeout)
    if len(header) < HEADER_LENGTH:
        raise TransportTimeout(f"{who} sent only {len(header)} of the {HEADER_LENGTH} header bytes within "
                               f"{timeout:g} s: {header.hex(' ')}")
    # L counts the data only; the checksum and the stop byte follow it.
    size = HEADER_LENGTH + header[HEADER_LENGTH - 1] + 2
    frame = header + link.read(size - HEADER_LENGTH, timeout)
    if len(frame) < size:
        raise TransportTimeout(f"{who} sent {len(frame)} of {size} frame bytes within {timeout:g} s: {frame.hex(' ')}")
    return frame


def _ser_of(frame: Frame) -> int | None:
    """The SER a reply echoes: after the DI in a normal reply, first in an error reply; None when absent."""
    if frame.control & ERROR_BIT:
        return frame.data[0] if frame.data else None
    return frame.data[2] if len(frame.data) >= 3 else None


def _ignored_because(frame: Frame, address: str, ser: int | None) -> str | None:
    """Why ``frame`` is not the answer to the request to ``address`` with ``ser``; None when it may be."""
    if not frame.control & REPLY_BIT:
        return f"a request (C={frame.control:02X}) to meter {frame.address}, not an answer — an echo of the line?"
    if address != BROADCAST_ADDRESS and frame.address != address:
        return f"a late answer from meter {frame.address}"
    echoed = _ser_of(frame)
    if ser is not None and echoed is not None and echoed != ser:
        return f"a late answer with SER {echoed} to an earlier request"
    return None


def exchange(link: ByteLink, request: bytes, address: str, ser: int | None) -> bytes:
    """Send ``request`` (to ``address``, with ``ser``) and return the frame that answers it.

    Frames that cannot be the answer (see the module text) are skipped, at
    most :data:`MAX_IGNORED_FRAMES` of them; when the real answer does not
    follow, the timeout says what was ignored — unless one of them came from
    the meter asked and differed only in its SER: that one is returned (a
    meter that does not echo SER). ``ser=None`` checks no SER.
    """
    link.wait_frame_gap()
    link.reset_input_buffer()
    link.write(request)
    meter = None if address == BROADCAST_ADDRESS else address
    ignored: list[str] = []
    other_ser: bytes | None = None
    while True:
        try:
            raw = receive_frame(link, link.timeout, meter)
        except TransportTimeout as exc:
            if other_ser is not None:
                return other_ser
            if ignored:
                raise TransportTimeout(f"{exc} (ignored {'; '.join(ignored)})") from exc
            raise
        frame = parse_frame(raw)
        reason = _ignored_because(frame, address, ser)
        if reason is None:
            return raw
        if _ignored_because(frame, address, None) is None:
            other_ser = raw
        ignored.append(reason)
        if len(ignored) > MAX_IGNORED_FRAMES:
            raise FrameError(f"{len(ignored)} frames on the line did not answer the request to "
                             f"{_meter_text(meter)}: {'; '.join(ignored)}")


def _check_order(di_order: str, allowed: tuple[str, ...]) -> None:
    if di_order not in allowed:
        raise ValueError(f"di_order must be one of {', '.join(allowed)}, got {di_order!r}")


def read_data(
    link: ByteLink,
    address: str,
    meter_type: int,
    di_order: str,
    preamble: int,
    ser: int,
    *,
    reply_order: str | None = None,
    status_mapping: StatusMapping = DEFAULT_STATUS_MAPPING,
    check_ser: bool = True,
) -> WaterReading:
    """Ask meter ``address`` for its 901F water data and decode the answer.

    The request goes out with DI 901F in ``di_order`` (``"2004"`` or
    ``"2018"``) behind ``preamble`` ``FE`` bytes. The answer must carry its
    DI in ``reply_order`` (default: ``di_order``; ``"auto"`` takes either and
    reports which in the result's ``di_order``).

    The result's ``ser`` is what the meter echoed; it differs from ``ser``
    only for a meter that does not echo it (see :func:`exchange`); with
    ``check_ser=False`` the first answer from the meter is taken whatever its SER.

    Raises :class:`TransportTimeout` (no or partial answer), :class:`FrameError`
    (garbled or not an answer to this request) or
    :class:`~drivers.codecs.cjt188.CJT188Fault` (the meter's error reply).
    """
    _check_order(di_order, ("2004", "2018"))
    request = read_data_request(address, meter_type, ser, di_order, preamble)
    raw = exchange(link, request, address, ser if check_ser else None)
    return decode_read_data_reply(raw, address, reply_order or di_order, None, status_mapping)


def read_address(link: ByteLink, di_order: str = "auto", preamble: int = MAX_PREAMBLE, ser: int = 0) -> str:
    """The address of the one meter on the line, asked by broadcast (type and address ``AA``).

    With two or more meters on the line their answers collide: use it on a
    bench or with one meter connected. ``di_order`` ``"auto"`` asks in the 2004
    byte order first and, after no answer or an error reply, in the 2018 order.
    An answer is accepted in either byte order.
    """
    _check_order(di_order, ("2004", "2018", "auto"))
    orders = ("2004", "2018") if di_order == "auto" else (di_order,)
    for order in orders[:-1]:
        try:
            return _read_address_once(link, order, preamble, ser)
        except (TransportTimeout, CJT188Fault):
            continue  # a meter of the other edition may ignore or refuse this byte order
    return _read_address_once(link, orders[-1], preamble, ser)


def _read_address_once(link: ByteLink, di_order: str, preamble: int, ser: int) -> str:
    request = read_address_request(ser, di_order, BROADCAST, preamble)
    raw = exchange(link, request, BROADCAST_ADDRESS, ser)
    return decode_read_address_reply(raw, "auto", ser)
