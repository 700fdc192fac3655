"""A bed-exit pad under the mattress on a GPIO pin: ``presence`` true/false, turning over is not leaving.

The pad is a contact that is closed while someone lies on it. It must stay
open for ``hold`` before ``presence`` goes false — shorter openings are the
person turning over or sitting up — and closed for ``debounce`` before it goes
true again. A change is published at the first read after it is decided,
so read the pad every second (``interval = "1s"``): a read costs no I/O and
publishes nothing unless something changed or ``report_every`` has passed.
README.md has the wiring.

>>> BedPad.check_options({"pin": 22, "hold": 5.0, "debounce": 0.5, "pull": "none", "active_high": None})
[('active_high', 'is required with pull = "none": true when the pin is high means on, false when low does')]
"""

from __future__ import annotations

from typing import Any

from drivers.base import Bus, Measurement
from drivers.contact.watch import (
    ACTIVE_HIGH_OPTION,
    PIN_OPTION,
    PULL_OPTION,
    REPORT_EVERY_OPTION,
    WatchedInput,
    check_pull,
)
from drivers.options import Option


class BedPad(WatchedInput):
    """``read()`` gives ``presence`` changes in order (or the state), with ``hold`` applied to openings."""

    name = "bed_pad"
    quantities = ("presence",)
    options = {
        "pin": PIN_OPTION,
        "hold": Option("duration", default="10s", min=0.0, max=600.0,
                       help="the pad must stay open this long before presence goes false (turning over is shorter)"),
        "debounce": Option("duration", default="500ms", min=0.0, max=60.0,
                           help="the pad must stay closed this long before presence goes true (a bump is shorter)"),
        "pull": PULL_OPTION,
        "active_high": ACTIVE_HIGH_OPTION,
        "report_every": REPORT_EVERY_OPTION,
    }

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        super().__init__(sensor_id, options, bus)
        self.rise = self.config["debounce"]
        self.fall = self.config["hold"]

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        return check_pull(values)

    def measurements(self, values: list[bool], activations: int, quality: str,
                     reason: str | None) -> list[Measurement]:
        return [Measurement("presence", value, None, quality, reason) for value in values]
