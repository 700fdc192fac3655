"""Honeywell digital pressure sensor (TruStability HSC / SSC, Basic ABP) on I2C.

Each read is a plain I2C read of 2 bytes (4 with ``temperature = true``):
two status bits, 14 bits of pressure counts and optionally 11 bits of
temperature. The counts become ``pressure`` through the transfer function of
the part (``transfer``, 10–90 % of 2^14 by default) between ``p_min`` and
``p_max``, in the ``unit`` of the part number — the driver converts nothing.

Status bits: normal → published; stale (the sensor has not measured since the
last read) → read again after a short wait, and if it stays stale the read
fails with reason ``stale`` (old data is never published as new); command
mode and diagnostic condition → a :class:`DeviceFault`. Counts outside the
transfer function's limits are published ``uncertain`` (``out_of_range``):
the pressure is beyond the compensated range.

>>> HoneywellPressure.check_options({"p_min": 1.0, "p_max": 1.0, "unit": "bar"})
[('p_max', 'must differ from p_min (1)')]
"""

from __future__ import annotations

import time
from typing import Any

from smbus2 import i2c_msg

from drivers.base import Bus, Driver, Measurement
from drivers.codecs import honeywell
from drivers.errors import DeviceFault
from drivers.transports.i2c import i2c_error
from drivers.options import Option

#: Units of the part-number range codes: M mbar, B bar, K kPa, G MPa, L Pa, N inH2O, P psi.
UNITS = ("mbar", "bar", "kPa", "MPa", "Pa", "inH2O", "psi")
#: Waits before re-reading stale data. The parts measure about every half millisecond once running and
#: some milliseconds after power-up, so data stale after these (~15 ms in all) means the sensor stopped.
STALE_WAITS = (0.001, 0.004, 0.010)


class StaleData(DeviceFault):
    """The sensor keeps returning data it has returned before: it is not measuring."""

    reason = "stale"


def _address(value: int) -> str | None:
    if 0x08 <= value <= 0x7F:
        return None
    return f"expected a 7-bit I2C address 0x08–0x7F (0x28 for output type 2 … 0x78 for 7), got 0x{value:02X}"


class HoneywellPressure(Driver):
    """One Honeywell HSC/SSC/ABP I2C pressure sensor; ``read()`` returns ``pressure`` (and ``temperature``)."""

    name = "honeywell_pressure"
    bus_kind = "i2c"
    quantities = ("pressure",)
    options = {
        "address": Option("int", default=0x28, check=_address,
                          help="7-bit I2C address 0x08–0x7F: 0x28 (40) for output type 2 in the part number, "
                               "0x38 for 3 … 0x78 for 7"),
        "p_min": Option("float", required=True, help="lower end of the range, as in the part number (e.g. 0)"),
        "p_max": Option("float", required=True,
                        help="upper end of the range, as in the part number (e.g. 1.6); differs from p_min"),
        "unit": Option("str", required=True, choices=UNITS,
                       help="unit of p_min / p_max, from the part number: B bar, M mbar, K kPa, G MPa, L Pa, "
                            "N inH2O, P psi"),
        "transfer": Option("str", default="10-90", choices=tuple(honeywell.TRANSFER),
                           help="transfer function, % of 2^14 counts: 10-90 (A), 5-95 (B), 5-85 (C), 4-94 (F)"),
        "temperature": Option("bool", default=False, help="read 4 bytes and publish temperature in degC"),
    }

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        p_min, p_max = values.get("p_min"), values.get("p_max")
        if p_min is not None and p_min == p_max:
            return [("p_max", f"must differ from p_min ({p_min:g})")]
        return []

    @classmethod
    def quantities_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        return ("pressure", "temperature") if options.get("temperature") else ("pressure",)

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        merged = self.resolved_options(options)
        super().__init__(sensor_id, merged, bus)
        self.quantities = self.quantities_for(merged)
        self.address: int = merged["address"]
        self.p_min: float = merged["p_min"]
        self.p_max: float = merged["p_max"]
        self.unit: str = merged["unit"]
        self.transfer: str = merged["transfer"]
        self.temperature: bool = merged["temperature"]

    def __repr__(self) -> str:
        return f"Honeywell sensor 0x{self.address:02X}"

    def _fetch(self) -> honeywell.Sample:
        message = i2c_msg.read(self.address, 4 if self.temperature else 2)
        try:
            self.bus.smbus.i2c_rdwr(message)
        except OSError as exc:
            raise i2c_error(exc, self.address, self.bus) from exc
        return honeywell.parse(bytes(message))

    def read(self) -> list[Measurement]:
        sample = self._fetch()
        for wait in STALE_WAITS:
            if sample.status != honeywell.STATUS_STALE:
                break
            time.sleep(wait)
            sample = self._fetch()
        where = f"0x{self.address:02X} on {getattr(self.bus, 'path', 'the I2C bus')}"
        if sample.status == honeywell.STATUS_STALE:
            raise StaleData(f"Honeywell sensor at {where} returns stale data (status 10) on every read for "
                            f"{sum(STALE_WAITS) * 1000:.0f} ms: it is not measuring — power-cycle it; a sleep-mode "
                            "part is not supported")
        if sample.status == honeywell.STATUS_COMMAND_MODE:
            raise DeviceFault(f"Honeywell sensor at {where} is in command mode (status 01), not measuring — "
                              "power-cycle it")
        if sample.status == honeywell.STATUS_DIAGNOSTIC:
            raise DeviceFault(f"Honeywell sensor at {where} reports a diagnostic condition (status 11): its "
                              "sensing element or calibration memory failed — replace the sensor")
        return self._measurements(sample)

    def _measurements(self, sample: honeywell.Sample) -> list[Measurement]:
        value = honeywell.pressure(sample.counts, self.p_min, self.p_max, self.transfer)
        if honeywell.in_range(sample.counts, self.transfer):
            found = [Measurement("pressure", value, self.unit)]
        else:
            found = [Measurement("pressure", value, self.unit, quality="uncertain", reason="out_of_range")]
        if self.temperature and sample.temperature_counts is not None:  # 4 bytes read: always there
            found.append(Measurement("temperature", honeywell.temperature_c(sample.temperature_counts), "degC"))
        return found
