"""Water meter with a reed-switch pulse output on a GPIO pin.

Each closing of the reed switch is ``litres_per_pulse`` litres. Pulses are
counted on edges reported by gpiozero (never by polling the pin), debounced
in software, and the meter reading is ``start_m3`` (the meter's register when
the gateway was installed) plus the pulses counted since.

>>> volume_m3(start_m3=123.4, pulses=1234, litres_per_pulse=10.0)
135.74
>>> volume_m3(start_m3=0.0, pulses=3, litres_per_pulse=0.1)   # no 0.30000000000000004
0.0003
"""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any

from gpiozero import DigitalInputDevice, GPIOZeroError

from drivers.base import Bus, Driver, Measurement
from drivers.errors import DriverError, TransportError
from drivers.options import Option, validate_options

log = logging.getLogger("linli.drivers.pulse_meter")


def volume_m3(start_m3: float, pulses: int, litres_per_pulse: float) -> float:
    """``start_m3 + pulses × litres_per_pulse / 1000``, computed in decimal so it prints as a meter shows it."""
    total = Decimal(repr(start_m3)) + pulses * Decimal(repr(litres_per_pulse)) / 1000
    return float(total)


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value:g}"


class PulseMeter(Driver):
    """Counts reed-switch pulses; ``read()`` returns the meter's ``volume`` in m³ and the count as state.

    Debouncing follows gpiozero's documented ``bounce_time`` meaning — after
    an accepted change of the input, further changes within ``debounce`` are
    ignored — but is done here on the edge times gpiozero reports, because
    pin factories implement ``bounce_time`` differently (lgpio: a level must
    stay stable; RPi.GPIO: ignore after an edge; MockFactory: not at all).
    ``debounce`` must exceed the switch's chatter and be shorter than the
    gap between two pulses at the highest flow.
    """

    name = "pulse_meter"
    read_at_stop = True
    bus_kind = "gpio"
    quantities = ("volume",)
    options = {
        "pin": Option("int", required=True, min=0, max=27, help="BCM number of the GPIO the reed switch is on"),
        "litres_per_pulse": Option("float", required=True, check=_positive,
                                   help="litres per pulse, as printed on the meter (10 for 10 L/imp); more than 0"),
        "debounce": Option("duration", default="20ms", min=0.0, max=1.0,
                           help="contact chatter this soon after an accepted edge is ignored; keep it shorter "
                                "than the gap between two pulses at the highest flow"),
        "pull": Option("str", default="up", choices=("up", "down"),
                       help="up: the switch closes to ground; down: it closes to 3.3 V"),
        "start_m3": Option("float", default=0.0, min=0.0,
                           help="the meter's register in m³ when the gateway was installed"),
    }

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        defaults, _ = validate_options(self.options, {})
        super().__init__(sensor_id, {**defaults, **options}, bus)
        self.pin: int = self.config["pin"]
        self.litres_per_pulse: float = self.config["litres_per_pulse"]
        self.start_m3: float = self.config["start_m3"]
        self.debounce: float = self.config["debounce"]
        self._lock = threading.Lock()  # the count is written on gpiozero's thread, read on the bus thread
        self._pulses = 0
        self._last_change: float | None = None  # monotonic time of the last accepted edge
        self._device: DigitalInputDevice | None = None

    def restore_state(self, state: dict[str, Any]) -> None:
        """Continue from a persisted ``{"pulses": n, …}``, unless the meter was re-based since.

        A state saved under another ``start_m3`` or ``litres_per_pulse`` is
        dropped: the technician re-read the meter (or it was replaced), and
        old pulses on a new base would count water twice.
        """
        pulses = state.get("pulses")
        if not isinstance(pulses, int) or isinstance(pulses, bool) or pulses < 0:
            log.warning("sensor %s: ignoring saved state without a valid pulse count: %r", self.sensor_id, state)
            return
        for key, current in (("start_m3", self.start_m3), ("litres_per_pulse", self.litres_per_pulse)):
            if key in state and state[key] != current:
                log.warning("sensor %s: %s changed from %r to %r; counting again from %r m3",
                            self.sensor_id, key, state[key], current, self.start_m3)
                return
        with self._lock:
            self._pulses = pulses

    def open(self) -> None:
        """Start counting edges on the pin; a no-op when already counting."""
        if self._device is not None:
            return
        factory = getattr(self.bus, "factory", None)
        if factory is None:
            raise TransportError(f"GPIO bus {self.bus.name} is not open")
        try:
            device = DigitalInputDevice(self.pin, pull_up=self.config["pull"] == "up", pin_factory=factory)
        except GPIOZeroError as exc:
            raise TransportError(f"GPIO{self.pin} cannot be used for sensor {self.sensor_id}: {exc}") from exc
        device.when_activated = self._on_activated
        device.when_deactivated = self._on_deactivated
        self._device = device

    def _on_activated(self, device: DigitalInputDevice) -> None:
        # gpiozero's thread: only count under the lock, nothing else.
        self._edge(device.active_time, closes=True)

    def _on_deactivated(self, device: DigitalInputDevice) -> None:
        self._edge(device.inactive_time, closes=False)

    def _edge(self, age: float | None, closes: bool) -> None:
        # ``age`` is how long ago gpiozero saw the edge, so a late callback does not shift it.
        when = time.monotonic() - (age or 0.0)
        with self._lock:
            if self._last_change is not None and when - self._last_change < self.debounce:
                return  # chatter
            self._last_change = when
            if closes:
                self._pulses += 1

    @property
    def pulses(self) -> int:
        """Pulses counted so far (including any restored count)."""
        with self._lock:
            return self._pulses

    def read(self) -> list[Measurement]:
        if self._device is None:
            raise DriverError(f"pulse meter {self.sensor_id} on GPIO{self.pin} is not open")
        pulses = self.pulses
        state = {"pulses": pulses, "start_m3": self.start_m3, "litres_per_pulse": self.litres_per_pulse}
        return [Measurement("volume", volume_m3(self.start_m3, pulses, self.litres_per_pulse), "m3", state=state)]

    def close(self) -> None:
        """Stop counting and release the pin; the count is kept for a later ``open()``."""
        device, self._device = self._device, None
        if device is not None:
            device.close()
