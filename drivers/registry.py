"""The one table that maps config names to driver and bus classes.

A new device is one module plus one line in ``DRIVERS``. Third-party packages
may add drivers through the ``linli.drivers`` entry-point group instead.
Classes are imported lazily so that a missing optional library only matters
to the config that uses it.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from drivers.base import Bus, Driver

DRIVERS: dict[str, str] = {
    "ads1115_loop": "drivers.ads1115_loop:Ads1115Loop",
    "bed_pad": "drivers.bed_pad:BedPad",
    "cjt188_meter": "drivers.cjt188_meter:Cjt188Meter",
    "contact": "drivers.contact:Contact",
    "honeywell_pressure": "drivers.honeywell_pressure:HoneywellPressure",
    "mbus_meter": "drivers.mbus_meter:MbusMeter",
    "modbus": "drivers.modbus:Modbus",
    "modbus_pressure": "drivers.modbus_pressure:ModbusPressure",
    "mr60bha1": "drivers.mr60bha1:Mr60bha1",
    "mr60bha2": "drivers.mr60bha2:Mr60bha2",
    "pulse_meter": "drivers.pulse_meter:PulseMeter",
}

BUS_KINDS: dict[str, str] = {
    "serial": "drivers.transports.serial:SerialBus",
    "i2c": "drivers.transports.i2c:I2cBus",
    "gpio": "drivers.transports.gpio:GpioBus",
}


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.lru_cache(maxsize=1)
def _plugin_drivers() -> dict[str, str]:
    # Scanning installed packages costs milliseconds each time; they do not change while we run.
    return {ep.name: ep.value for ep in entry_points(group="linli.drivers")}


def driver_names() -> list[str]:
    """All driver names known, built-in and from entry points, sorted."""
    return sorted({**_plugin_drivers(), **DRIVERS})


def driver_class(name: str) -> type[Driver]:
    """The driver class for ``name``; ``KeyError`` when there is none."""
    target = DRIVERS.get(name) or _plugin_drivers()[name]
    return _load(target)


def bus_class(kind: str) -> type[Bus]:
    """The bus class for a bus ``kind``; ``KeyError`` when there is none."""
    return _load(BUS_KINDS[kind])
