"""``linli probe serial`` and ``linli scan mbus|cjt188``: a technician's look at a serial line.

A probe sends one request (two for an M-Bus meter addressed by its secondary
id: the selection, then the data request) and keeps what went each way with
its timing; the answer is decoded by :mod:`edge.decode`, exactly as ``linli
decode`` shows a frame pasted from a sniffer. Requests and answers are read
with the drivers' own exchange code (:mod:`drivers.codecs.mbus_exchange`,
:mod:`drivers.codecs.cjt188_exchange`, :func:`drivers.codecs.modbus.transact`)
through a :class:`Recorder` in front of the :class:`SerialBus`, so a probe
sees the line exactly as the agent's drivers do.

Everything here returns plain data (:class:`Probe`, :class:`MbusScanResult`,
:class:`Cjt188Scan`) with the exit status it deserves; the CLI only renders it.
Exit statuses (sysexits): 0 answered and decoded; 65 answered with garbage;
69 nothing answered; 74 the port itself failed (missing, in use, no permission).

>>> exchange = Exchange(request=bytes.fromhex("10 5b fe 59 16"), at_ms=0.4)
>>> exchange.as_json()
{'request': {'hex': '10 5b fe 59 16', 'at_ms': 0.4}, 'answer': None}
>>> print("\\n".join(hex_dump(bytes(range(0x10, 0x22)), mark=17)))
0000  10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
0010  20 21
         ^^
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from drivers.codecs import cjt188, cjt188_exchange, mbus_exchange, mbus_link, modbus
from drivers.errors import DeviceFault, FrameError, TransportError, TransportTimeout
from drivers.transports.serial import SerialBus
from edge.decode import BadFrame, decode
from edge.errors import LinliError
from edge.i18n import _

EX_OK, EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_IOERR = 0, 64, 65, 69, 74

#: Line settings a meter of each protocol leaves the factory with: (baud rate, parity).
LINE_DEFAULTS = {"mbus": (2400, "E"), "cjt188": (2400, "E"), "modbus": (9600, "N")}
#: Primary address 254 is answered by any meter, whatever its own address: right for one meter on the line.
MBUS_ANY_METER = 254
#: Character times to listen after a complete answer, for a second device answering at the same address.
_TRAILING_CHARS = 10
#: … but never less than this: a USB adapter may hold received bytes for up to 16 ms before handing them on.
_TRAILING_MIN_S = 0.03
#: RSP_UD's control field; a meter may add ACD (0x20, class-1 data waiting) and DFC (0x10, busy).
_RSP_UD, _RSP_UD_FLAGS = 0x08, 0x30
#: A line that keeps talking after an answer is given up on after this many bytes (two of the longest frames).
_TRAILING_MAX = 2 * 261
#: SER of the CJ/T 188 requests a probe sends; any value works, the meter echoes it.
_CJT188_SER = 0x01


class PortError(LinliError):
    """The serial port itself failed: missing, in use, no permission, unplugged (exit 74)."""

    exit_code = EX_IOERR


class ProbeUsageError(LinliError):
    """An option that does not fit the protocol (exit 64)."""

    exit_code = EX_USAGE


# --- recording what goes over the line ---------------------------------------------------------------------------
@dataclass
class Exchange:
    """One request and what came back; ``at_ms`` counts from the opening of the port, the answer's times from the
    moment the request was handed to the port (so they include the request's own time on the wire)."""

    request: bytes
    at_ms: float
    answer: bytearray = field(default_factory=bytearray)
    first_byte_ms: float | None = None
    last_byte_ms: float | None = None

    def as_json(self) -> dict[str, Any]:
        answer = None
        if self.answer:
            answer = {"hex": self.answer.hex(" "), "first_byte_ms": self.first_byte_ms,
                      "last_byte_ms": self.last_byte_ms}
        return {"request": {"hex": self.request.hex(" "), "at_ms": self.at_ms}, "answer": answer}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class Recorder:
    """A :class:`~drivers.codecs.ByteLink` in front of a :class:`SerialBus` that notes every byte each way, timed.

    Each write opens a new :class:`Exchange`; what is read until the next write is its answer. The first read
    after a write is split into one byte and the rest, so the arrival of the first answer byte is timed exactly.
    """

    def __init__(self, bus: SerialBus):
        self.bus = bus
        self.timeout = bus.timeout
        self.char_time = bus.char_time
        self.exchanges: list[Exchange] = []
        self._opened = time.monotonic()
        self._sent = 0.0

    def wait_frame_gap(self) -> None:
        self.bus.wait_frame_gap()

    def reset_input_buffer(self) -> None:
        self.bus.reset_input_buffer()

    def write(self, data: bytes) -> None:
        self._sent = time.monotonic()
        self.exchanges.append(Exchange(request=bytes(data), at_ms=_ms(self._sent - self._opened)))
        self.bus.write(data)

    def read(self, n: int, timeout: float | None = None) -> bytes:
        timeout = self.timeout if timeout is None else timeout
        current = self.exchanges[-1] if self.exchanges else None
        if current is None:
            return self.bus.read(n, timeout)
        deadline = time.monotonic() + timeout
        data = b""
        if current.first_byte_ms is None and n > 1:
            data = self._note(current, self.bus.read(1, timeout))
            if not data:
                return data
            n, timeout = n - 1, max(0.0, deadline - time.monotonic())
        return data + self._note(current, self.bus.read(n, timeout))

    def _note(self, exchange: Exchange, data: bytes) -> bytes:
        if data:
            elapsed = _ms(time.monotonic() - self._sent)
            if exchange.first_byte_ms is None:
                exchange.first_byte_ms = elapsed
            exchange.last_byte_ms = elapsed
            exchange.answer += data
        return data


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


def line_settings(bus: SerialBus) -> str:
    """``2400 8E1``: baud rate, data bits, parity, stop bits, as device manuals write them."""
    config = bus.config
    return f"{bus.baudrate} {config['bytesize']}{config['parity']}{config['stopbits']}"


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


def mbus_answer_timeout(baudrate: int) -> float:
    """How long an M-Bus meter may take to start answering: 330 bit times + 50 ms (EN 13757-2), + 50 ms for the
    USB adapter.

    >>> mbus_answer_timeout(2400), mbus_answer_timeout(300)
    (0.2375, 1.2)
    """
    return round(330 / baudrate + 0.1, 4)


def open_bus(port: str, protocol: str, baudrate: int | None, parity: str | None, timeout: float) -> SerialBus:
    """The (not yet opened) bus with the protocol's factory line settings where none are given."""
    default_baud, default_parity = LINE_DEFAULTS[protocol]
    return SerialBus(f"{protocol}-probe", {"port": port, "baudrate": baudrate or default_baud,
                                          "parity": parity or default_parity, "bytesize": 8, "stopbits": 1,
                                          "timeout": timeout})


def scan_range(first: int, last: int) -> range:
    """Primary addresses ``first`` to ``last``, both included, within 0–250.

    >>> scan_range(1, 3)
    range(1, 4)
    """
    top = mbus_link.MAX_PRIMARY_ADDRESS
    if not 0 <= first <= last <= top:
        raise ProbeUsageError(_("--from and --to must satisfy 0 ≤ from ≤ to ≤ {top}, got {first} and {last}")
                              .format(top=top, first=first, last=last))
    return range(first, last + 1)


def _trailing(link: SerialBus | Recorder) -> bytes:
    """Bytes still arriving after a complete answer: a second device answering too, or noise."""
    window = max(_TRAILING_CHARS * link.char_time, _TRAILING_MIN_S)
    extra = b""
    # Read until a whole window passes in silence, so the rest of a second answer cannot spill into the next request.
    while len(extra) < _TRAILING_MAX and (chunk := link.read(256, window)):
        extra += chunk
    return extra


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
                extra = _trailing(recorder)
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
        return cjt188_exchange.exchange(link, request, address, _CJT188_SER)
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
            request = cjt188.read_address_request(_CJT188_SER, di_order, cjt188.BROADCAST)
            raw = _cjt188_exchange(link, request, cjt188.BROADCAST_ADDRESS)
            return raw, _answers(lambda: cjt188.decode_read_address_reply(raw, "auto", _CJT188_SER))
        request = cjt188.read_data_request(address, cjt188.METER_TYPE_CODES[meter_type], _CJT188_SER, di_order)
        raw = _cjt188_exchange(link, request, address)
        return raw, _answers(lambda: cjt188.decode_read_data_reply(raw, address, "auto", _CJT188_SER))

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


# --- scans ---------------------------------------------------------------------------------------------------
@dataclass
class MbusScanResult:
    """One primary address scanned: ``state`` is ``found``, ``collision`` or ``silent``."""

    address: int
    state: str
    id: str | None = None
    manufacturer: str | None = None
    medium: str | None = None
    version: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"address": self.address, "id": self.id, "manufacturer": self.manufacturer, "medium": self.medium,
                "version": self.version, "error": self.error}




def _collision(address: int, why: str) -> MbusScanResult:
    return MbusScanResult(address, "collision", error=_(
        "garbled answer — two meters with this address, or noise on the line: {why}").format(why=why))


def scan_mbus(bus: SerialBus, addresses: Iterable[int]) -> Iterator[MbusScanResult]:
    """Ping each primary address with SND_NKE; where an ACK comes back, REQ_UD2 names the meter.

    The way libmbus's ``mbus-serial-scan`` does it (bin/mbus-serial-scan.c in rscada/libmbus: SND_NKE, wait
    for E5; an invalid answer, or more bytes after the E5, is a collision). The REQ_UD2 that follows also
    catches a collision the SND_NKE hid: two meters' E5 bytes are identical, so on copper they overlap into one
    clean ACK, but their data answers differ. Opens ``bus``; one result per address, silent ones too. A port
    that fails raises :class:`PortError`.
    """
    try:
        with bus:
            yield from _scan(bus, addresses)
    except TransportError as exc:  # timeouts are handled per address; this is the port itself
        raise PortError(str(exc)) from None


def _scan(bus: SerialBus, addresses: Iterable[int]) -> Iterator[MbusScanResult]:
    for address in addresses:
        try:
            mbus_exchange.send_nke(bus, address)
        except mbus_exchange.AnswerTimeout as exc:
            yield _collision(address, str(exc)) if exc.received else MbusScanResult(address, "silent")
            continue
        except FrameError as exc:
            yield _collision(address, str(exc))
            continue
        if extra := _trailing(bus):
            yield _collision(address, _("{count} more byte(s) after the ACK: {hex}").format(
                count=len(extra), hex=extra[:16].hex(" ")))
            continue
        yield _identify(bus, address)


def _identify(bus: SerialBus, address: int) -> MbusScanResult:
    """The meter at ``address`` that just acknowledged SND_NKE, named by its answer to REQ_UD2."""
    try:
        # After SND_NKE the first REQ_UD2 carries FCB=1.
        response = mbus_exchange.request_ud2(bus, address, fcb=True)
    except mbus_exchange.AnswerTimeout as exc:
        if exc.received:
            return _collision(address, str(exc))
        return MbusScanResult(address, "found", error=_("acknowledged SND_NKE but sent no data: {error}").format(
            error=exc))
    except FrameError as exc:
        return _collision(address, str(exc))
    except DeviceFault as exc:  # an application error is still a meter at this address
        return MbusScanResult(address, "found", error=str(exc))
    if extra := _trailing(bus):
        return _collision(address, _("{count} more byte(s) after the data: {hex}").format(
            count=len(extra), hex=extra[:16].hex(" ")))
    header = response.header
    if header is None:  # CI 0x78/0x7A answers carry no identity of their own
        return MbusScanResult(address, "found")
    return MbusScanResult(address, "found", id=header.id, manufacturer=header.manufacturer, medium=header.medium,
                          version=header.version)


@dataclass
class Cjt188Scan:
    """The one meter on the line, as it answered read-address by broadcast."""

    port: str
    address: str | None = None
    meter_type: str | None = None
    di_order: str | None = None
    error: str | None = None
    suspects: list[str] = field(default_factory=list)
    exit_code: int = EX_OK

    def as_json(self) -> dict[str, Any]:
        return {"port": self.port, "address": self.address, "meter_type": self.meter_type,
                "di_order": self.di_order, "error": self.error, "suspects": self.suspects}


def _read_address(bus: SerialBus, di_order: str) -> Cjt188Scan:
    request = cjt188.read_address_request(_CJT188_SER, di_order, cjt188.BROADCAST)
    raw = cjt188_exchange.exchange(bus, request, cjt188.BROADCAST_ADDRESS, _CJT188_SER)
    address = cjt188.decode_read_address_reply(raw, "auto", _CJT188_SER)
    if extra := _trailing(bus):
        raise FrameError(f"meter {address} answered, then {len(extra)} more byte(s) came: {extra[:16].hex(' ')}")
    frame = cjt188.parse_frame(raw)
    edition = cjt188.detect_di_order(frame.data, cjt188.DI_READ_ADDRESS)
    return Cjt188Scan(bus.port, address, frame.meter_type_name, edition)


def scan_cjt188(bus: SerialBus, di_order: str = "auto") -> Cjt188Scan:
    """Read the address by broadcast; ``auto`` asks in the 2004 byte order, then in the 2018 one.

    Every meter on the line answers a broadcast, so their answers collide: only one meter may be connected.
    """
    orders = ("2004", "2018") if di_order == "auto" else (di_order,)
    try:
        with bus:
            for order in orders[:-1]:
                try:
                    return _read_address(bus, order)
                except (TransportTimeout, cjt188.CJT188Fault):
                    continue  # a meter of the other edition ignores or refuses this byte order
            return _read_address(bus, orders[-1])
    except TransportTimeout as exc:
        return Cjt188Scan(bus.port, error=str(exc), suspects=suspects("cjt188", line_settings(bus)),
                          exit_code=EX_UNAVAILABLE)
    except TransportError as exc:
        return Cjt188Scan(bus.port, error=str(exc), exit_code=EX_IOERR)
    except DeviceFault as exc:  # one meter answered, but with an error reply: no address to show
        return Cjt188Scan(bus.port, error=str(exc), exit_code=EX_DATAERR)
    except FrameError as exc:
        return Cjt188Scan(bus.port, exit_code=EX_DATAERR, error=_(
            "{error} — is more than one meter connected? Reading the address by broadcast needs exactly one").format(
            error=exc))


# --- rendering helpers ---------------------------------------------------------------------------------------
def hex_dump(data: bytes, mark: int | None = None, width: int = 16) -> list[str]:
    """``data`` as lines of ``width`` bytes with their offset; ``^^`` under the byte at ``mark``."""
    lines = []
    for start in range(0, max(len(data), 1), width):
        lines.append(f"{start:04x}  " + data[start:start + width].hex(" "))
        if mark is not None and start <= mark < start + width:
            lines.append(" " * (6 + 3 * (mark - start)) + "^^")
    if data and mark == len(data) and len(data) % width == 0:
        lines.append(f"{len(data):04x}  ^^")  # the frame ended where more was expected
    return lines
