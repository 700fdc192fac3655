"""A 4–20 mA loop (a pressure transmitter) read through one channel of a TI ADS1115 ADC on I2C.

The loop current flows through a shunt resistor; the ADS1115 measures the
voltage across it in single-shot mode — config written with OS = 1, the OS bit
polled until the conversion is done, then the conversion register read. Each
read publishes ``loop_current`` in mA and the configured quantity (default
``pressure`` in MPa), linear over ``span``: 4 mA → ``span[0]``, 20 mA → ``span[1]``.

NAMUR NE 43 decides what a current means:

* 3.8–20.5 mA: a measurement → both readings good;
* 3.6–3.8 or 20.5–21 mA: the transmitter is saturated (the process is beyond
  its range) → the quantity is published ``uncertain``, reason ``out_of_range``;
* below 3.6 or above 21 mA: a failure signal, a broken wire (0 mA) or a short
  → the quantity is ``bad`` with reason ``loop_fault`` and no value, never a
  made-up pressure. ``loop_current`` keeps its measured value and stays good:
  it is a true measurement, and it lets a rule (``loop_current`` below 3.6 or
  above 21) raise the broken-wire alarm, which a ``bad`` reading could not.

>>> namur(12.0), namur(3.7), namur(0.0), namur(21.5)
('measuring', 'saturated', 'fault', 'fault')
>>> scale(12.0, (0.0, 1.6))
0.8
"""

from __future__ import annotations

import math
import time
from typing import Any

from drivers.base import Bus, Driver, Measurement
from drivers.codecs.ads1115 import (
    ADS1115_DATA_RATES,
    DATA_RATE_TOLERANCE,
    LO_THRESH_RESET,
    MODE_SINGLE_SHOT,
    MUX_DIFFERENTIAL,
    MUX_SINGLE,
    OS,
    PGA_CODES,
    REG_CONFIG,
    REG_CONVERSION,
    REG_LO_THRESH,
    THRESHOLD_PROBES,
    code_to_volts,
    config_word,
    decode_config,
    conversion_ready,
    conversion_seconds,
    identify,
    is_full_scale,
    lsb_volts,
    signed16,
    swap16,
)
from drivers.errors import DeviceFault, DriverError, TransportTimeout
from drivers.transports.i2c import i2c_error
from drivers.options import Option, validate_options

#: NAMUR NE 43 limits in mA: below/above the outer pair is a failure, between the pairs the signal is saturated.
FAULT_LOW, SATURATED_LOW, SATURATED_HIGH, FAULT_HIGH = 3.6, 3.8, 20.5, 21.0
ADDRESSES = {0x48: "GND", 0x49: "VDD", 0x4A: "SDA", 0x4B: "SCL"}
#: Wake-up from power-down before a single-shot conversion, plus the Pi's sleep overshoot and I2C traffic.
_CONVERSION_SLACK = 0.010
#: A poll sleeps this fraction of a conversion period: the wait ends at most that long after the result is in.
_POLL_FRACTION = 0.125


def namur(ma: float) -> str:
    """``measuring``, ``saturated`` or ``fault`` for a loop current, by NAMUR NE 43."""
    if ma < FAULT_LOW or ma > FAULT_HIGH:
        return "fault"
    if ma < SATURATED_LOW or ma > SATURATED_HIGH:
        return "saturated"
    return "measuring"


def scale(ma: float, span: tuple[float, float], digits: int = 6) -> float:
    """The value of ``ma`` on a 4–20 mA loop whose ends are ``span``, rounded to ``digits`` decimals."""
    low, high = span
    return round(low + (ma - 4.0) * (high - low) / 16.0, digits)


def budget(data_rate: int) -> float:
    """Longest wait for one conversion at ``data_rate``: the period with 10 % tolerance and slack, twice over.

    >>> round(budget(128) * 1000, 1), round(budget(8) * 1000, 1)
    (37.2, 295.0)
    """
    return 2 * (conversion_seconds(data_rate) * (1 + DATA_RATE_TOLERANCE) + _CONVERSION_SLACK)


def _address(value: int) -> str | None:
    if value in ADDRESSES:
        return None
    return f"expected 0x48–0x4B (ADDR pin to GND, VDD, SDA or SCL), got 0x{value:02X}"


def _span(value: list) -> str | None:
    if (len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) for v in value)):
        return f"expected two numbers [value at 4 mA, value at 20 mA], e.g. [0.0, 1.6], got {value!r}"
    if value[0] == value[1]:
        return f"the values at 4 mA and 20 mA must differ, got {value!r}"
    return None


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value:g}"


def _quantity(value: str) -> str | None:
    if not value or not value.replace("_", "").isalnum() or not value.isascii() or value != value.lower():
        return f'expected a lower-case name like "pressure" or "level", got "{value}"'
    if value == "loop_current":
        return '"loop_current" is published anyway; name the measured quantity, e.g. "pressure"'
    return None


class Ads1115Loop(Driver):
    """One 4–20 mA loop on one ADS1115 channel (single-ended or differential)."""

    name = "ads1115_loop"
    bus_kind = "i2c"
    quantities = ("loop_current", "pressure")
    options = {
        "address": Option("int", default=0x48, check=_address,
                          help="I2C address 0x48–0x4B (72–75), set by the ADDR pin: GND, VDD, SDA or SCL"),
        "channel": Option("int", min=0, max=3,
                          help="single-ended input AIN0–AIN3 against GND; give channel or differential, not both"),
        "differential": Option("str", choices=tuple(MUX_DIFFERENTIAL),
                               help="differential input pair AINp-AINn, instead of channel"),
        "pga": Option("float", default=4.096, choices=tuple(PGA_CODES),
                      help="full-scale range in volts (±); must exceed 21 mA × shunt_ohms, so that a NAMUR high "
                           "fault is seen"),
        "data_rate": Option("int", default=128, choices=ADS1115_DATA_RATES,
                            help="conversions per second; a read waits for one conversion"),
        "shunt_ohms": Option("float", required=True, check=_positive,
                             help="resistance of the shunt the loop current flows through, in ohms, as measured; "
                                  "more than 0"),
        "span": Option("list", required=True, check=_span,
                       help="[value at 4 mA, value at 20 mA], two different numbers, e.g. [0.0, 1.6] for a "
                            "0–1.6 MPa transmitter"),
        "unit": Option("str", default="MPa", help="unit of the span values"),
        "quantity": Option("str", default="pressure", check=_quantity,
                           help="name the measured quantity is published as, lower case; not loop_current, which is "
                                "published anyway"),
    }

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems between keys: one input, and a full-scale range that shows a NAMUR high fault.

        >>> Ads1115Loop.check_options({"channel": 0, "shunt_ohms": 250.0, "span": [0, 1.6], "pga": 4.096})
        [('pga', '±4.096 V ends at 16.4 mA through 250 Ω; choose a pga of at least 5.25 V (21 mA × 250 Ω) so that a NAMUR high fault (above 21 mA) is seen')]
        """  # noqa: E501
        defaults, _ = validate_options(cls.options, {})
        values = {**defaults, **values}
        problems = []
        if values.get("channel") is None and values.get("differential") is None:
            problems.append(("channel",
                             'give the input: channel = 0…3, or differential = "0-1" | "0-3" | "1-3" | "2-3"'))
        elif values.get("channel") is not None and values.get("differential") is not None:
            problems.append(("differential", 'conflicts with "channel": give one input, not both'))
        shunt, pga = values.get("shunt_ohms"), values.get("pga")
        # Strictly above 21 mA × shunt: full scale itself must lie beyond the NAMUR high-fault limit.
        if shunt and pga and pga <= FAULT_HIGH * shunt / 1000:
            problems.append(("pga", f"±{pga:g} V ends at {pga / shunt * 1000:.1f} mA through {shunt:g} Ω; choose a "
                                    f"pga of at least {FAULT_HIGH * shunt / 1000:g} V (21 mA × {shunt:g} Ω) so that a "
                                    "NAMUR high fault (above 21 mA) is seen"))
        return problems

    @classmethod
    def quantities_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        return ("loop_current", options.get("quantity") or "pressure")

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        merged = self.resolved_options(options)
        super().__init__(sensor_id, merged, bus)
        self.quantities = self.quantities_for(merged)
        self.address: int = merged["address"]
        self.pga: float = merged["pga"]
        self.data_rate: int = merged["data_rate"]
        self.shunt_ohms: float = merged["shunt_ohms"]
        self.span: tuple[float, float] = (float(merged["span"][0]), float(merged["span"][1]))
        self.unit: str = merged["unit"]
        self.quantity: str = merged["quantity"]
        if merged["channel"] is not None:
            self.input_name, mux = f"AIN{merged['channel']}", MUX_SINGLE[merged["channel"]]
        else:
            pair = merged["differential"]
            self.input_name, mux = f"AIN{pair[0]}–AIN{pair[2]}", MUX_DIFFERENTIAL[pair]
        self.config_word = config_word(mux, self.pga, self.data_rate)
        self.period = conversion_seconds(self.data_rate)
        self._checked = False
        # Readings are rounded a digit below the ADC's resolution (binary noise is not information).
        step_ma = lsb_volts(self.pga) / self.shunt_ohms * 1000
        self._ma_digits = max(0, math.ceil(-math.log10(step_ma)) + 1)
        step_value = step_ma * abs(self.span[1] - self.span[0]) / 16
        self._value_digits = max(0, math.ceil(-math.log10(step_value)) + 1)

    def __repr__(self) -> str:
        return f"ADS1115 0x{self.address:02X} {self.input_name}"

    # --- I/O -----------------------------------------------------------------------------------------
    def _read_register(self, register: int) -> int:
        try:
            return swap16(self.bus.smbus.read_word_data(self.address, register))
        except OSError as exc:
            raise i2c_error(exc, self.address, self.bus) from exc

    def _write_register(self, register: int, word: int) -> None:
        try:
            self.bus.smbus.write_word_data(self.address, register, swap16(word))
        except OSError as exc:
            raise i2c_error(exc, self.address, self.bus) from exc

    def open(self) -> None:
        """Make sure an ADS1115 answers at the address (an ADS1015 or another chip is a :class:`DeviceFault`)."""
        if self._checked:
            return
        probes = []
        for word in THRESHOLD_PROBES:
            self._write_register(REG_LO_THRESH, word)
            probes.append((word, self._read_register(REG_LO_THRESH)))
        self._write_register(REG_LO_THRESH, LO_THRESH_RESET)
        chip = identify(probes)
        where = f"0x{self.address:02X} on {getattr(self.bus, 'path', 'the I2C bus')}"
        if chip == "ADS1015":
            raise DeviceFault(
                f"the chip at {where} is an ADS1015 (12-bit), not an ADS1115: its threshold registers drop the 4 "
                "low bits. Its data rates and resolution differ; fit an ADS1115 board (the 16-bit one)")
        if chip is None:
            shown = ", ".join(f"0x{written:04X} → 0x{read:04X}" for written, read in probes)
            raise DeviceFault(
                f"the chip at {where} is not an ADS1115: words written to its Lo_thresh register read back "
                f"otherwise ({shown}). Is another device at that address? (i2cdetect shows addresses only)")
        self._checked = True

    def close(self) -> None:
        """Nothing to release: in single-shot mode the chip powers down by itself after each conversion."""
        self._checked = False

    def read(self) -> list[Measurement]:
        if not self._checked:
            raise DriverError(f"{self!r} of sensor {self.sensor_id} is not open")
        code = self.convert()
        return self.measurements(code)

    def convert(self) -> int:
        """One single-shot conversion of this channel: the signed 16-bit code."""
        # Left in continuous mode by another program, the chip never powers down, and only from power-down
        # does OS = 1 start a conversion: switch to single-shot first (it stops after the current conversion).
        config = self._read_register(REG_CONFIG)
        continuous = not config & MODE_SINGLE_SHOT
        if continuous:
            self._write_register(REG_CONFIG, self.config_word & ~OS)
        # A conversion still running (a read abandoned after a timeout, or a neighbour on the same chip)
        # would ignore our start and hand us its result for another input: let it finish first.
        if continuous or not conversion_ready(config):
            # That conversion runs at the data rate in the register, not necessarily ours.
            rate = ADS1115_DATA_RATES[decode_config(config).data_rate_code]
            self._wait_idle("finish the conversion in progress before this one", rate)
        self._write_register(REG_CONFIG, self.config_word)
        # Polling earlier than one period can only find OS = 0, so the first look waits a full period.
        time.sleep(self.period)
        config = self._wait_idle("finish a conversion", self.data_rate)
        if config & ~OS != self.config_word & ~OS:
            raise DeviceFault(
                f"{self!r}: config read back 0x{config:04X} after writing 0x{self.config_word:04X} — the chip "
                "reset (power glitch?) or another program uses it; the conversion is discarded")
        return signed16(self._read_register(REG_CONVERSION))

    def _wait_idle(self, doing: str, data_rate: int) -> int:
        """Poll the config register until OS = 1 (no conversion running) for a conversion at ``data_rate``."""
        limit = budget(data_rate)
        deadline = time.monotonic() + limit
        while True:
            config = self._read_register(REG_CONFIG)
            if conversion_ready(config):
                return config
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(
                    f"{self!r} did not {doing} within {limit * 1000:.0f} ms at {data_rate} SPS "
                    f"(OS bit still 0; config 0x{config:04X}) — is it really an ADS1115?")
            time.sleep(min(conversion_seconds(data_rate) * _POLL_FRACTION, left))

    # --- code → measurements -------------------------------------------------------------------------
    def measurements(self, code: int) -> list[Measurement]:
        """``loop_current`` and the quantity for a conversion code (NAMUR NE 43 as in the module docstring)."""
        ma = round(code_to_volts(code, self.pga) / self.shunt_ohms * 1000, self._ma_digits)
        if is_full_scale(code):
            current = Measurement("loop_current", ma, "mA", quality="uncertain", reason="adc_full_scale")
        else:
            current = Measurement("loop_current", ma, "mA")
        # A clipped ADC says only "at least this much": the current may be a fault above 21 mA.
        state = "fault" if is_full_scale(code) else namur(ma)
        if state == "fault":
            return [current, Measurement(self.quantity, None, self.unit, quality="bad", reason="loop_fault")]
        value = scale(ma, self.span, self._value_digits)
        if state == "saturated":
            return [current, Measurement(self.quantity, value, self.unit, quality="uncertain", reason="out_of_range")]
        return [current, Measurement(self.quantity, value, self.unit)]
