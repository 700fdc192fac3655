"""Protocol codecs: turn requests into bytes and bytes back into values.

Codecs are pure functions over ``bytes`` plus, where a protocol needs a
request/response exchange, a ``transact`` that works over any
:class:`ByteLink` — in practice :class:`drivers.transports.serial.SerialBus`.
"""

from __future__ import annotations

from typing import Protocol


class ByteLink(Protocol):
    """What a codec needs from a byte-stream transport."""

    timeout: float

    def wait_frame_gap(self) -> None:
        """Block until the line has been silent long enough to start a new frame."""

    def reset_input_buffer(self) -> None:
        """Discard bytes nobody asked for."""

    def write(self, data: bytes) -> None:
        """Send bytes."""

    def read(self, n: int, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes: fewer only when the deadline passed first."""
