"""A dry contact on a GPIO pin — pump running, pump fault, door open — published as a named boolean.

Every change is published, in order, at the first read after it (a pump that
ran for 8 s between two reads is ``true`` then ``false``), the state again
every ``report_every`` when nothing changes, and with each report
``activations_last_hour``: how often the contact went on in the last rolling
hour (a jockey pump starting too often). Edges come from gpiozero callbacks;
see :mod:`drivers.contact.watch` and README.md.

>>> Contact.check_options({"pin": 5, "quantity": "Pump-Running", "pull": "up", "active_high": None})
[('quantity', 'expected a snake_case name like "pump_running", got "Pump-Running"')]
>>> Contact.quantities_for({"quantity": "pump_fault"})
('pump_fault', 'activations_last_hour')
"""

from __future__ import annotations

import re
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

ACTIVATIONS = "activations_last_hour"
_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class Contact(WatchedInput):
    """A debounced contact; ``read()`` gives its changes (or state) as ``quantity`` plus ``activations_last_hour``."""

    name = "contact"
    quantities = ()  # named by the config: see quantities_for
    options = {
        "pin": PIN_OPTION,
        "quantity": Option("str", required=True,
                           help='the name published, snake_case, e.g. "pump_running", "pump_fault", "door_open"; not '
                                '"activations_last_hour", which every contact publishes'),
        "pull": PULL_OPTION,
        "active_high": ACTIVE_HIGH_OPTION,
        "debounce": Option("duration", default="50ms", min=0.0, max=10.0,
                           help="a change counts once the new level has held this long"),
        "report_every": REPORT_EVERY_OPTION,
    }

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        super().__init__(sensor_id, options, bus)
        self.quantity: str = self.config["quantity"]
        self.quantities = self.quantities_for(self.config)  # what a failed read reports bad before any good one
        self.rise = self.fall = self.config["debounce"]

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        problems = check_pull(values)
        quantity = values.get("quantity")
        if quantity is not None and not _SNAKE_CASE.match(quantity):
            problems.append(("quantity", f'expected a snake_case name like "pump_running", got "{quantity}"'))
        elif quantity == ACTIVATIONS:
            problems.append(("quantity", f'"{ACTIVATIONS}" is published by every contact; name the contact itself'))
        return problems

    @classmethod
    def quantities_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        return (options["quantity"], ACTIVATIONS)

    def measurements(self, values: list[bool], activations: int, quality: str,
                     reason: str | None) -> list[Measurement]:
        states = [Measurement(self.quantity, value, None, quality, reason) for value in values]
        return [*states, Measurement(ACTIVATIONS, activations, None)]
