"""The serial tap: a port opened with a protocol's line settings, and a record of every byte each way, timed.

>>> exchange = Exchange(request=bytes.fromhex("10 5b fe 59 16"), at_ms=0.4)
>>> exchange.as_json()
{'request': {'hex': '10 5b fe 59 16', 'at_ms': 0.4}, 'answer': None}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from drivers.transports.serial import SerialBus
from edge.errors import LinliError
from edge.exits import EX_IOERR

#: Line settings a meter of each protocol leaves the factory with: (baud rate, parity).
LINE_DEFAULTS = {"mbus": (2400, "E"), "cjt188": (2400, "E"), "modbus": (9600, "N")}
#: Character times to listen after a complete answer, for a second device answering at the same address.
_TRAILING_CHARS = 10
#: … but never less than this: a USB adapter may hold received bytes for up to 16 ms before handing them on.
_TRAILING_MIN_S = 0.03
#: A line that keeps talking after an answer is given up on after this many bytes (two of the longest frames).
_TRAILING_MAX = 2 * 261


class PortError(LinliError):
    """The serial port itself failed: missing, in use, no permission, unplugged (exit 74)."""

    exit_code = EX_IOERR


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


def line_settings(bus: SerialBus) -> str:
    """``2400 8E1``: baud rate, data bits, parity, stop bits, as device manuals write them."""
    config = bus.config
    return f"{bus.baudrate} {config['bytesize']}{config['parity']}{config['stopbits']}"


def open_bus(port: str, protocol: str, baudrate: int | None, parity: str | None, timeout: float) -> SerialBus:
    """The (not yet opened) bus with the protocol's factory line settings where none are given."""
    default_baud, default_parity = LINE_DEFAULTS[protocol]
    return SerialBus(f"{protocol}-probe", {"port": port, "baudrate": baudrate or default_baud,
                                          "parity": parity or default_parity, "bytesize": 8, "stopbits": 1,
                                          "timeout": timeout})


def trailing(link: SerialBus | Recorder) -> bytes:
    """Bytes still arriving after a complete answer: a second device answering too, or noise."""
    window = max(_TRAILING_CHARS * link.char_time, _TRAILING_MIN_S)
    extra = b""
    # Read until a whole window passes in silence, so the rest of a second answer cannot spill into the next request.
    while len(extra) < _TRAILING_MAX and (chunk := link.read(256, window)):
        extra += chunk
    return extra

