"""What the two 60 GHz vital-sign radars (MR60BHA1, MR60BHA2) share: a driver for a device that streams.

The radar talks without being asked. The kernel keeps what arrives on the
UART until the bus thread comes round; each ``read()`` (once per ``interval``,
the publishing rate) drains it without waiting, parses it with the codec's
stream parser and keeps the latest value of each kind, noting in which read
it arrived. It then publishes one measurement per configured quantity:

* a periodic value (heart rate, breathing rate, distance) not refreshed for
  ``stale_after`` reads is ``bad`` with reason ``stale`` — an old heart rate is
  never published as a new one;
* a value the radar reports only when it changes (MR60BHA1 presence, movement,
  in-bed, sleep state) holds while the radar keeps streaming;
* a value the radar marks as "not measured" (rate 0, no target, NaN) is ``bad``
  with reason ``not_measured`` or ``no_target``; one not reported since the
  port was opened is ``bad`` with reason ``not_reported``.

No bytes at all for ``silence`` raises :class:`TransportTimeout` (radar
unplugged, unpowered, TX wire off); bytes without a single valid frame for as
long raise :class:`FrameError` (wrong baud rate, another device). Both forget
every value, so nothing from before the outage is published after it.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any, ClassVar

from drivers.base import Bus, Driver, Measurement
from drivers.errors import FrameError, TransportTimeout
from drivers.options import Option, validate_options

#: Bytes asked for per non-blocking read, and the most read per ``read()`` (a bound, far above what a
#: radar sends in any sensible interval: about 1 kB/s).
CHUNK = 4096
MAX_DRAIN = 256 * CHUNK
#: Rates the radar reports as 0 when it measures none.
_RATES = ("heart_rate", "breathing_rate")


def publish_option(kinds: dict[str, str | None], default: tuple[str, ...]) -> Option:
    """The ``publish`` option: a list of the codec's kinds, each at most once."""
    def check(value: list) -> str | None:
        unknown = [item for item in value if item not in kinds]
        if unknown:
            return f"unknown quantity {unknown[0]!r}; this radar reports " + ", ".join(kinds)
        if len(set(value)) != len(value) or not value:
            return "list each quantity once, at least one"
        return None
    return Option("list", default=list(default), check=check,
                  help="the quantities to publish: " + ", ".join(kinds))


class StreamingRadar(Driver):
    """Base of the radar drivers; a subclass names its codec, model and the kinds reported on change."""

    bus_kind = "serial"
    codec: ClassVar[ModuleType]
    model: ClassVar[str]
    #: Kinds reported only when they change: they hold while the radar streams.
    held_kinds: ClassVar[frozenset[str]] = frozenset()
    common_options: ClassVar[dict[str, Option]] = {
        "stale_after": Option("int", default=3, min=1, max=1000,
                              help="publish a value as stale once this many reads passed without a new one"),
        "max_age": Option("duration", default="15s", min=1.0, max=3600.0,
                          help="never publish a heart rate, breathing rate or distance older than this, whatever "
                               "stale_after says"),
        "silence": Option("duration", default="10s", min=0.5, max=600.0,
                          help="no bytes (or no valid frame) for this long: the radar is dead or unplugged"),
    }

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        defaults, _ = validate_options(self.options, {})
        super().__init__(sensor_id, {**defaults, **options}, bus)
        self.publish: tuple[str, ...] = tuple(self.config["publish"])
        self.stale_after: int = self.config["stale_after"]
        self.max_age: float = self.config["max_age"]
        self.silence: float = self.config["silence"]
        self.parser = self.codec.StreamParser()
        #: Frames with a good checksum whose content the manual does not allow.
        self.invalid = 0
        self._reads = 0
        self._latest: dict[str, tuple[Any, int, float]] = {}
        self._last_byte = self._last_frame = time.monotonic()
        self._bytes_since_frame = 0

    @classmethod
    def quantities_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        return tuple(options.get("publish") or cls.quantities)

    def open(self) -> None:
        """Start listening afresh: nothing heard yet, the silence clock starts now."""
        self.parser = self.codec.StreamParser()
        self._latest.clear()
        self._last_byte = self._last_frame = time.monotonic()
        self._bytes_since_frame = 0
        self.bus.reset_input_buffer()  # what waited in the kernel since before we listened is old

    def read(self) -> list[Measurement]:
        """Drain what arrived, update the latest values, publish one measurement per configured quantity."""
        self._reads += 1
        data = self._drain()
        now = time.monotonic()
        if data:
            self._last_byte = now
        frames = self.parser.feed(data)
        self._bytes_since_frame += len(data)
        for frame in frames:
            try:
                reported = self.codec.values(frame)
            except FrameError:
                self.invalid += 1
                continue
            for value in reported:
                self._latest[value.kind] = (value.value, self._reads, now)
        if frames:
            self._last_frame = now
            self._bytes_since_frame = 0
        self._check_alive(now)
        self.after_read()
        return [self._measurement(kind) for kind in self.publish]

    def after_read(self) -> None:
        """Hook: e.g. ask the radar for a value it reports only on change."""

    def known(self, kind: str) -> bool:
        return kind in self._latest

    def _drain(self) -> bytes:
        chunks = []
        total = 0
        while total < MAX_DRAIN:
            chunk = self.bus.read(CHUNK, timeout=0)
            chunks.append(chunk)
            total += len(chunk)
            if len(chunk) < CHUNK:
                break
        return b"".join(chunks)

    def _check_alive(self, now: float) -> None:
        port = getattr(self.bus, "port", self.bus.name)
        if now - self._last_byte > self.silence:
            self._latest.clear()
            raise TransportTimeout(
                f"{self.model} radar on {port} sent nothing for {now - self._last_byte:.0f} s — unplugged, "
                "unpowered, or its TX not wired to the adapter's RX?")
        if now - self._last_frame > self.silence:
            self._latest.clear()
            raise FrameError(
                f"{self.model} radar on {port} sent {self._bytes_since_frame} bytes in "
                f"{now - self._last_frame:.0f} s but no valid frame (bad checksums: {self.parser.bad_checksum}) — "
                "wrong baud rate (115200), or not an " + self.model)

    def _measurement(self, kind: str) -> Measurement:
        unit = self.codec.KINDS[kind]
        if kind not in self._latest:
            return Measurement(kind, None, unit, quality="bad", reason="not_reported")
        value, seen, at = self._latest[kind]
        # Counted in reads (a radar that stopped sending one value) and in seconds (with a long interval,
        # stale_after reads would be minutes): an old heart rate is never published as new.
        if kind not in self.held_kinds and (self._reads - seen >= self.stale_after
                                            or time.monotonic() - at > self.max_age):
            return Measurement(kind, None, unit, quality="bad", reason="stale")
        if value is None or (kind in _RATES and value == 0):
            return Measurement(kind, None, unit, quality="bad",
                               reason="no_target" if kind == "distance" else "not_measured")
        return Measurement(kind, value, unit)
