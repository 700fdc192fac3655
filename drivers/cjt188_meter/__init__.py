"""CJ/T 188 household water meter (2004 or 2018 edition) on an RS-485 or M-Bus line.

Each read sends one read-data request (DI 901F) to the meter's 14-digit
address and publishes, from its answer:

* ``volume`` and ``settlement_volume`` in m³ (whatever volume unit the meter
  counts in; a non-volume unit such as kWh is a ``bad`` reading, never a wrong m³);
* ``clock_offset`` in seconds: the meter's clock minus the gateway's, so a
  drifting meter shows;
* ``valve_open`` (true/false; an abnormal or unknown valve state is ``bad``);
* ``battery_low`` (true/false).

The DI byte order (``di_order``) is ``"2004"`` (``90 1F``), ``"2018"``
(``1F 90``) or ``"auto"``; README.md says exactly what ``auto`` does.

>>> Cjt188Meter.check_options({"address": "00000805000001", "valve_open_code": 1})
[('valve_open_code', 'is the same code (1) as "valve_closed_code"; the valve cannot be open and closed at once')]
>>> utc_offset("+08:00")
datetime.timezone(datetime.timedelta(seconds=28800))
"""

from __future__ import annotations

import re
import time
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from drivers.base import Bus, Driver, Measurement
from drivers.codecs.cjt188 import (
    ADDRESS_DIGITS,
    MAX_PREAMBLE,
    METER_TYPE_CODES,
    CJT188Fault,
    Status,
    StatusMapping,
    WaterReading,
)
from drivers.codecs.cjt188_exchange import read_data
from drivers.errors import DriverError, FrameError, TransportTimeout
from drivers.options import Option, validate_options
from drivers.retry import attempts_for, with_retries

#: Meter types whose 901F answer is the water layout this driver decodes (gas meters share it;
#: heat and electricity meters answer 901F with other fields).
FLOW_METER_TYPES = tuple(name for name, code in METER_TYPE_CODES.items() if 0x10 <= code <= 0x1F or code == 0x30)
DI_ORDER_CHOICES = ("2004", "2018", "auto")
_UTC_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_ABNORMAL_VALVE = 0b11

log = logging.getLogger("linli.drivers.cjt188_meter")


def _address(value: str) -> str | None:
    if len(value) != ADDRESS_DIGITS or not value.isdigit() or not value.isascii():
        return (f'expected the meter\'s {ADDRESS_DIGITS}-digit address as a string, leading zeros included, '
                f'e.g. "00000805000001", got "{value}"')
    return None


def utc_offset(text: str) -> timezone:
    """The fixed time zone of ``"+08:00"``-style text; ``ValueError`` when it is not one."""
    match = _UTC_OFFSET.match(text)
    if not match or int(match.group(2)) > 14 or int(match.group(3)) >= 60:
        raise ValueError(f'expected a UTC offset like "+08:00", got "{text}"')
    sign = -1 if match.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


def _utc_offset_problem(text: str) -> str | None:
    try:
        utc_offset(text)
    except ValueError as exc:
        return str(exc)
    return None


def _other(di_order: str) -> str:
    return "2018" if di_order == "2004" else "2004"


class Cjt188Meter(Driver):
    """A CJ/T 188 water (or gas) meter at one address on a serial line."""

    name = "cjt188_meter"
    bus_kind = "serial"
    quantities = ("volume", "settlement_volume", "clock_offset", "valve_open", "battery_low")
    options = {
        "address": Option("str", required=True, check=_address,
                          help="the meter's 14-digit address as printed (A6…A0), as a string with its leading zeros"),
        "meter_type": Option("str", default="cold_water", choices=FLOW_METER_TYPES,
                             help="meter type byte T of the requests"),
        "di_order": Option("str", default="auto", choices=DI_ORDER_CHOICES,
                           help='byte order of DI 901F: "2004" (90 1F), "2018" (1F 90) or "auto"'),
        "preamble": Option("int", default=MAX_PREAMBLE, min=0, max=MAX_PREAMBLE,
                           help="FE wake-up bytes before each request"),
        "retries": Option("int", default=2, min=0, max=5,
                          help="extra attempts after no answer or a garbled answer"),
        "meter_utc_offset": Option("str", default="+08:00", check=_utc_offset_problem,
                                   help="UTC offset (\"+08:00\") the meter's clock is set to, for clock_offset"),
        "valve_byte": Option("int", default=0, min=0, max=1, help="status byte of the valve bits: 0 ST0, 1 ST1"),
        "valve_shift": Option("int", default=0, min=0, max=6, help="lower of the two valve bits"),
        "valve_open_code": Option("int", default=0, min=0, max=3, help="value of the two valve bits when open"),
        "valve_closed_code": Option("int", default=1, min=0, max=3, help="value of the two valve bits when closed"),
        "battery_byte": Option("int", default=0, min=0, max=1, help="status byte of the battery bit: 0 ST0, 1 ST1"),
        "battery_bit": Option("int", default=2, min=0, max=7, help="bit set when the battery is low"),
    }

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems between the status-mapping keys, which :func:`validate_options` checks one by one."""
        defaults, _ = validate_options(cls.options, {})
        values = {**defaults, **values}
        problems = []
        if values["valve_open_code"] == values["valve_closed_code"]:
            blamed, other = (("valve_open_code", "valve_closed_code") if "valve_open_code" in _given(values, defaults)
                             else ("valve_closed_code", "valve_open_code"))
            problems.append((blamed, f'is the same code ({values[blamed]}) as "{other}"; '
                                     "the valve cannot be open and closed at once"))
        valve_bits = (values["valve_shift"], values["valve_shift"] + 1)
        if values["battery_byte"] == values["valve_byte"] and values["battery_bit"] in valve_bits:
            problems.append(("battery_bit", f"is one of the valve bits (ST{values['valve_byte']} bits "
                                            f"{valve_bits[0]}–{valve_bits[1]}); see valve_shift"))
        return problems

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        merged = self.resolved_options(options)
        super().__init__(sensor_id, merged, bus)
        self.address: str = merged["address"]
        self.meter_type: int = METER_TYPE_CODES[merged["meter_type"]]
        self.preamble: int = merged["preamble"]
        self.retries: int = merged["retries"]
        self.zone = utc_offset(merged["meter_utc_offset"])
        self.status_mapping = _status_mapping(merged)
        self.auto = merged["di_order"] == "auto"
        #: Byte order of the next request; under ``auto`` it follows what the meter answered.
        self.di_order: str = "2004" if self.auto else merged["di_order"]
        #: Under ``auto``: whether the meter has answered in :attr:`di_order` (so it is no longer guessed).
        self.learned = False
        self._ser = 0
        #: False once the meter answered with a SER other than the one asked (some never echo it).
        self.echoes_ser = True

    # --- one read ----------------------------------------------------------------------------------
    def read(self) -> list[Measurement]:
        try:
            reading = with_retries(self._request, self._attempts(), self._retryable)
        except (TransportTimeout, CJT188Fault):
            if self.auto:
                # Forget the order so that a meter exchanged for one of the other edition is found again.
                self.learned = False
            raise
        return self._measurements(reading, gateway_now=time.time())

    def _attempts(self) -> int:
        attempts = attempts_for(self, self.retries)
        if self.auto and not self.learned and not self.failing:
            return max(attempts, 2)  # one request in each byte order, even with retries = 0
        return attempts

    def _retryable(self, exc: DriverError) -> bool:
        if isinstance(exc, CJT188Fault):
            # An error reply is definite — unless it may only mean "not my byte order".
            return self.auto and not self.learned
        return isinstance(exc, (TransportTimeout, FrameError))

    def _request(self) -> WaterReading:
        order = self.di_order
        ser, self._ser = self._ser, (self._ser + 1) & 0xFF
        try:
            reading = read_data(self.bus, self.address, self.meter_type, order, self.preamble, ser,
                                reply_order="auto" if self.auto else None, status_mapping=self.status_mapping,
                                check_ser=self.echoes_ser)
        except (TransportTimeout, CJT188Fault):
            if self.auto and not self.learned:
                self.di_order = _other(order)
            raise
        if self.echoes_ser and reading.ser != ser:
            # Only this answer came, with another SER: the meter does not echo it. Stop waiting for one that does.
            log.warning("%s: meter %s answers SER %d to SER %d; not checking SER for it any more",
                        self.sensor_id, self.address, reading.ser, ser)
            self.echoes_ser = False
        if self.auto:
            self.di_order, self.learned = reading.di_order, True
        return reading

    # --- answer → measurements ---------------------------------------------------------------------
    def _measurements(self, reading: WaterReading, gateway_now: float) -> list[Measurement]:
        return [
            _volume("volume", reading.volume, reading.volume_unit, reading.volume_m3),
            _volume("settlement_volume", reading.settlement_volume, reading.settlement_volume_unit,
                    reading.settlement_volume_m3),
            self._clock_offset(reading.clock, gateway_now),
            self._valve(reading.status),
            Measurement("battery_low", reading.status.battery_low, None),
        ]

    def _clock_offset(self, clock: str | None, gateway_now: float) -> Measurement:
        if clock is None:
            return Measurement("clock_offset", None, None, quality="bad",
                               reason="meter clock unset or not a date (all 00 or FF): set it with the vendor's tool")
        # The meter shows whole seconds, truncated: its true time lies in [clock, clock + 1), so take the middle.
        meter_time = datetime.fromisoformat(clock).replace(tzinfo=self.zone).timestamp() + 0.5
        # Whole seconds: finer figures would only show the answer's transmission time.
        return Measurement("clock_offset", float(round(meter_time - gateway_now)), "s")

    def _valve(self, status: Status) -> Measurement:
        if status.valve in ("open", "closed"):
            return Measurement("valve_open", status.valve == "open", None)
        mapping = self.status_mapping
        byte = (status.st0, status.st1)[mapping.valve_byte]
        bits = f"ST{mapping.valve_byte} bits {mapping.valve_shift}–{mapping.valve_shift + 1}"
        if status.valve == "abnormal":
            reason = f"valve reports abnormal ({bits} = 11, ST{mapping.valve_byte} = {byte:02X}): stuck or motor fault"
        else:
            reason = (f"valve state unknown: {bits} of ST{mapping.valve_byte} = {byte:02X} match neither "
                      f"valve_open_code nor valve_closed_code")
        return Measurement("valve_open", None, None, quality="bad", reason=reason)


def _volume(quantity: str, value: float | None, unit: str, m3: float | None) -> Measurement:
    if value is None:
        return Measurement(quantity, None, None, quality="bad",
                           reason="meter leaves this field unfilled (FF): it keeps no settlement-day reading")
    if m3 is None:
        return Measurement(quantity, None, None, quality="bad",
                           reason=f"meter reports {value:g} {unit}, not a volume: is it a heat or energy meter? "
                                  "check address and meter_type")
    return Measurement(quantity, m3, "m3")


def _status_mapping(values: dict[str, Any]) -> StatusMapping:
    states = {values["valve_open_code"]: "open", values["valve_closed_code"]: "closed"}
    states.setdefault(_ABNORMAL_VALVE, "abnormal")
    return StatusMapping(valve_byte=values["valve_byte"], valve_shift=values["valve_shift"], valve_states=states,
                         battery_byte=values["battery_byte"], battery_bit=values["battery_bit"])


def _given(values: dict[str, Any], defaults: dict[str, Any]) -> set[str]:
    """Keys whose value differs from the default — the ones a user wrote (for blame in messages)."""
    return {key for key, value in values.items() if defaults.get(key) != value}
