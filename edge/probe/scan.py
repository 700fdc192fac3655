"""The scanners: which M-Bus primary addresses answer (``linli scan mbus``), which CJ/T 188 meter is on the line
(``linli scan cjt188``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from drivers.codecs import cjt188, cjt188_exchange, mbus_exchange, mbus_link
from drivers.errors import DeviceFault, FrameError, TransportError, TransportTimeout
from drivers.transports.serial import SerialBus
from edge.exits import EX_DATAERR, EX_IOERR, EX_OK, EX_UNAVAILABLE
from edge.i18n import _
from edge.probe.requests import CJT188_SER, ProbeUsageError, suspects
from edge.probe.tap import PortError, line_settings, trailing


def mbus_answer_timeout(baudrate: int) -> float:
    """How long an M-Bus meter may take to start answering: 330 bit times + 50 ms (EN 13757-2), + 50 ms for the
    USB adapter.

    >>> mbus_answer_timeout(2400), mbus_answer_timeout(300)
    (0.2375, 1.2)
    """
    return round(330 / baudrate + 0.1, 4)


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
        if extra := trailing(bus):
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
    if extra := trailing(bus):
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
    request = cjt188.read_address_request(CJT188_SER, di_order, cjt188.BROADCAST)
    raw = cjt188_exchange.exchange(bus, request, cjt188.BROADCAST_ADDRESS, CJT188_SER)
    address = cjt188.decode_read_address_reply(raw, "auto", CJT188_SER)
    if extra := trailing(bus):
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

