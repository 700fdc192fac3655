"""One request to one device on a serial line, and what its answer says: ``linli probe serial``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from drivers.codecs import cjt188, cjt188_exchange, mbus_exchange, mbus_link, modbus
from drivers.errors import DeviceFault, FrameError, TransportError, TransportTimeout
from drivers.transports.serial import SerialBus
from edge.decode import BadFrame, decode
from edge.errors import LinliError
from edge.exits import EX_DATAERR, EX_IOERR, EX_OK, EX_UNAVAILABLE, EX_USAGE
from edge.i18n import _
from edge.probe.tap import Exchange, Recorder, line_settings, open_bus, trailing

#: Primary address 254 is answered by any meter, whatever its own address: right for one meter on the line.
MBUS_ANY_METER = 254
#: RSP_UD's control field; a meter may add ACD (0x20, class-1 data waiting) and DFC (0x10, busy).
_RSP_UD, _RSP_UD_FLAGS = 0x08, 0x30
#: SER of the CJ/T 188 requests a probe sends; any value works, the meter echoes it.
CJT188_SER = 0x01


class ProbeUsageError(LinliError):
    """An option that does not fit the protocol (exit 64)."""

    exit_code = EX_USAGE


# --- the probe's result ------------------------------------------------------------------------------------------
@dataclass
class Probe:
    """What a probe did and found. ``offset`` points into the last exchange's answer."""

    port: str
    protocol: str
    line: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    decoded: dict[str, Any] | None = None
    error: str | None = None
    offset: int | None = None
    suspects: list[str] = field(default_factory=list)
    exit_code: int = EX_OK

    def as_json(self) -> dict[str, Any]:
        """``request``/``answer`` are the last exchange's; ``exchanges`` lists all of them (two for a secondary
        M-Bus address: the selection, then REQ_UD2)."""
        last = self.exchanges[-1].as_json() if self.exchanges else {"request": None, "answer": None}
        return {"port": self.port, "protocol": self.protocol, "line": self.line, "request": last["request"],
                "answer": last["answer"], "decoded": self.decoded, "error": self.error, "offset": self.offset,
                "suspects": self.suspects,
                "exchanges": [exchange.as_json() for exchange in self.exchanges]}


def suspects(protocol: str, line: str) -> list[str]:
    """Why a device usually does not answer, most likely first, for a technician to go through."""
    found = [_("the address: is it really the device's? (--address)"),
             _("baud rate and parity: {line} was used (--baudrate, --parity)").format(line=line)]
    if protocol == "mbus":
        found.append(_("the M-Bus level converter: is it powered? It feeds the bus; without it no meter can answer"))
        found.append(_("the meter: is it connected? M-Bus has no polarity, but a loose wire cuts it off"))
    else:
        found.append(_("the wiring: RS-485 A and B swapped, or a loose wire"))
        found.append(_("power: does the device have it?"))
        if protocol == "cjt188":
            found.append(_("the edition: a 2018 meter may ignore a 2004 request (--di-order 2018)"))
            found.append(_("an M-Bus line: is its level converter powered?"))
    return found


#: Does the exchange(s) of one probe; returns the answer frame and the codec's complaint about it (or None).
Ask = Callable[["Recorder"], tuple[bytes, dict[str, Any] | None]]


def run_probe(bus: SerialBus, protocol: str, ask: Ask) -> Probe:
    """Open ``bus``, let ``ask`` do its exchange(s) and turn whatever happens into a :class:`Probe`.

    ``ask`` raises :class:`TransportTimeout` when nothing or only part of a frame arrived,
    :class:`FrameError` for garbage and :class:`TransportError` when the port failed.
    """
    result = Probe(port=bus.port, protocol=protocol, line=line_settings(bus))
    try:
        with bus:
            recorder = Recorder(bus)
            try:
                frame, check = ask(recorder)
                extra = trailing(recorder)
            finally:
                result.exchanges = recorder.exchanges
    except TransportTimeout as exc:
        answer = result.exchanges[-1].answer if result.exchanges else b""
        result.error = str(exc)
        if answer:  # something answered, but not a whole frame
            result.exit_code, result.offset = EX_DATAERR, len(answer)
        else:
            result.exit_code = EX_UNAVAILABLE
            result.suspects = suspects(protocol, result.line)
        return result
    except TransportError as exc:
        result.error, result.exit_code = str(exc), EX_IOERR
        return result
    except FrameError as exc:
        result.error, result.offset, result.exit_code = str(exc), exc.offset, EX_DATAERR
        return result
    end = len(result.exchanges[-1].answer) - len(extra)
    start = end - len(frame)  # noise or wake-up bytes may come before the frame
    try:
        result.decoded = decode(protocol, frame.hex())
    except BadFrame as exc:
        result.error, result.exit_code = str(exc), EX_DATAERR
        result.offset = None if exc.offset is None else start + exc.offset
        return result
    if check is not None:  # the frame is fine but does not answer the request: its complaint, with its offset
        result.error, result.exit_code = check["error"], EX_DATAERR
        result.offset = None if check["offset"] is None else start + check["offset"]
    elif extra:
        result.error, result.exit_code, result.offset = _(
            "{count} more byte(s) after the answer: more than one device answered (a collision), "
            "or noise on the line").format(count=len(extra)), EX_DATAERR, end
    return result


def _answers(check: Callable[[], object]) -> dict[str, Any] | None:
    """Run the codec's check that a frame answers the request: None when it does, else its complaint.

    An error reply (a :class:`DeviceFault`) is an answer too: the decoder shows it as one.
    """
    try:
        check()
    except DeviceFault:
        return None
    except FrameError as exc:
        return {"error": str(exc), "offset": exc.offset}
    return None


# --- M-Bus ---------------------------------------------------------------------------------------------------
def parse_mbus_address(text: str | None) -> int | str:
    """A primary address (0–250, or 254 for any single meter) or an 8-digit secondary id (F: any digit).

    >>> parse_mbus_address(None), parse_mbus_address("5"), parse_mbus_address("1234567f")
    (254, 5, '1234567F')
    """
    if text is None:
        return MBUS_ANY_METER
    if re.fullmatch(r"\d{1,3}", text) and (int(text) <= mbus_link.MAX_PRIMARY_ADDRESS or int(text) == MBUS_ANY_METER):
        return int(text)
    if re.fullmatch(r"[0-9Ff]{8}", text):
        return text.upper()
    raise ProbeUsageError(_("M-Bus address must be a primary address 0–250, 254 (any one meter) or an 8-digit "
                            "secondary id, got {address!r}").format(address=text))


def _mbus_exchange(link: Recorder, request: bytes, source: str) -> bytes:
    """Send ``request`` on a quiet line; the one frame that answers it (as mbus_exchange does, keeping the frame)."""
    link.wait_frame_gap()
    link.reset_input_buffer()
    link.write(request)
    # The meter cannot answer before the request is on the wire; its transmission time counts in.
    frame = mbus_exchange.receive_frame(link, round(link.timeout + len(request) * link.char_time, 3), source=source)
    if frame == request:  # a level converter that echoes the master
        frame = mbus_exchange.receive_frame(link, link.timeout, source=source)
    return frame


def _expect_ack(link: Recorder, frame: bytes, source: str) -> None:
    """An ACK, or a :class:`FrameError` whose offset points into the recorded answer."""
    if frame == bytes((mbus_link.ACK,)):
        return
    start = len(link.exchanges[-1].answer) - len(frame)
    try:
        kind = mbus_link.parse_frame(frame).kind
    except FrameError as exc:
        raise FrameError(str(exc), offset=start + (exc.offset or 0)) from None
    raise FrameError(f"{source} answered its selection with a {kind} frame instead of an ACK (E5)", offset=start)


def _check_rsp_ud(frame: bytes, address: int) -> dict[str, Any] | None:
    """Why ``frame`` is no RSP_UD from ``address``, as :func:`mbus_exchange.request_ud2` judges it; None when it is."""
    parsed = mbus_link.parse_frame(frame)
    if parsed.kind != "long":
        return {"error": _("the meter answered REQ_UD2 with a {kind} frame instead of its data (RSP_UD)").format(
            kind=parsed.kind), "offset": 0}
    if parsed.control & ~_RSP_UD_FLAGS & 0xFF != _RSP_UD:
        return {"error": _("the answer's control field 0x{control:02X} is not RSP_UD (0x08)").format(
            control=parsed.control), "offset": 4}
    if address <= mbus_link.MAX_PRIMARY_ADDRESS and parsed.address != address:
        return {"error": _("the answer came from address {got}, not {asked} — two meters share an address, or a "
                           "late answer from another meter").format(got=parsed.address, asked=address), "offset": 5}
    return None


def probe_mbus(bus: SerialBus, address: int | str) -> Probe:
    """REQ_UD2 to a primary address; for a secondary id, select it first (an ACK expected) then REQ_UD2 to 253."""

    def ask(link: Recorder) -> tuple[bytes, dict[str, Any] | None]:
        primary = address
        if isinstance(address, str):
            source = f"M-Bus meter {address}"
            _expect_ack(link, _mbus_exchange(link, mbus_link.select_secondary(address), source), source)
            primary = mbus_link.SECONDARY_ADDRESS
        # FCB clear (0x5B), as libmbus's mbus-serial-request-data sends it: right whatever the meter's last FCB was.
        frame = _mbus_exchange(link, mbus_link.req_ud2(primary, fcb=False), mbus_exchange.describe(primary))
        try:
            return frame, _check_rsp_ud(frame, primary)
        except FrameError:
            return frame, None  # the decoder reports what is wrong with the frame, offset and all

    return run_probe(bus, "mbus", ask)


# --- CJ/T 188 ------------------------------------------------------------------------------------------------
def parse_cjt188_address(text: str | None) -> str | None:
    """14 decimal digits, or None (read the address by broadcast).

    >>> parse_cjt188_address("00000805000001")
    '00000805000001'
    """
    if text is None:
        return None
    if not re.fullmatch(r"\d{14}", text):
        raise ProbeUsageError(_("a CJ/T 188 address is 14 digits, got {address!r}").format(address=text))
    return text


def _cjt188_exchange(link: Recorder, request: bytes, address: str) -> bytes:
    """:func:`cjt188_exchange.exchange`, with the offset of a broken frame moved from its ``68`` into the answer."""
    try:
        return cjt188_exchange.exchange(link, request, address, CJT188_SER)
    except FrameError as exc:
        answer = link.exchanges[-1].answer
        # The exchange reads from the first 68 on (the FE wake-up bytes before it are skipped); without one, the
        # offset already counts the bytes that came instead.
        if exc.offset is None or cjt188.START not in answer:
            raise
        raise FrameError(str(exc), offset=answer.index(cjt188.START) + exc.offset) from None


def probe_cjt188(bus: SerialBus, address: str | None, di_order: str = "2004", meter_type: str = "cold_water") -> Probe:
    """Read data (DI 901F) from ``address``, or read the address by broadcast when there is none."""

    def ask(link: Recorder) -> tuple[bytes, dict[str, Any] | None]:
        if address is None:
            request = cjt188.read_address_request(CJT188_SER, di_order, cjt188.BROADCAST)
            raw = _cjt188_exchange(link, request, cjt188.BROADCAST_ADDRESS)
            return raw, _answers(lambda: cjt188.decode_read_address_reply(raw, "auto", CJT188_SER))
        request = cjt188.read_data_request(address, cjt188.METER_TYPE_CODES[meter_type], CJT188_SER, di_order)
        raw = _cjt188_exchange(link, request, address)
        return raw, _answers(lambda: cjt188.decode_read_data_reply(raw, address, "auto", CJT188_SER))

    return run_probe(bus, "cjt188", ask)


# --- Modbus RTU ----------------------------------------------------------------------------------------------
def probe_modbus(bus: SerialBus, unit: int, register: int, count: int, function: int) -> Probe:
    """One register read (function 3 or 4); an exception answer counts as answered."""
    try:
        request = modbus.read_registers_request(unit, register, count, function)
    except ValueError as exc:
        raise ProbeUsageError(str(exc)) from None

    def ask(link: Recorder) -> tuple[bytes, dict[str, Any] | None]:
        frame = modbus.transact(link, request, unit)
        return frame, _answers(lambda: modbus.decode_registers_response(frame, unit, function, count, register))

    return run_probe(bus, "modbus", ask)


def parse_modbus_unit(text: str | None) -> int:
    """The unit (slave) id to read from, 1–247; 1 when none is given."""
    if text is None:
        return 1
    if not re.fullmatch(r"\d{1,3}", text) or not 1 <= int(text) <= 247:
        raise ProbeUsageError(_("a Modbus unit is 1–247, got {address!r}").format(address=text))
    return int(text)


#: Options that only one protocol understands, with their defaults.
_PROTOCOL_OPTIONS = {"register": ("modbus", 0), "count": ("modbus", 1), "function": ("modbus", 3),
                     "di_order": ("cjt188", "2004"), "meter_type": ("cjt188", "cold_water")}


def probe_serial(port: str, protocol: str, *, address: str | None = None, baudrate: int | None = None,
                 parity: str | None = None, timeout: float = 1.0, **options: Any) -> Probe:
    """Probe one device; ``options`` are the protocol's own (``register``, ``count``, ``function`` for Modbus,
    ``di_order``, ``meter_type`` for CJ/T 188), None meaning the default. Raises :class:`ProbeUsageError` for
    an address or option that does not fit ``protocol``."""
    chosen = {}
    for name, value in options.items():
        owner, default = _PROTOCOL_OPTIONS[name]
        if value is not None and owner != protocol:
            raise ProbeUsageError(_("--{option} applies to --protocol {owner} only").format(
                option=name.replace("_", "-"), owner=owner))
        chosen[name] = default if value is None else value
    bus = open_bus(port, protocol, baudrate, parity, timeout)
    if protocol == "mbus":
        return probe_mbus(bus, parse_mbus_address(address))
    if protocol == "cjt188":
        return probe_cjt188(bus, parse_cjt188_address(address), chosen["di_order"], chosen["meter_type"])
    return probe_modbus(bus, parse_modbus_unit(address), chosen["register"], chosen["count"], chosen["function"])


