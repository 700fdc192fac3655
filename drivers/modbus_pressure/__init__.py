"""Fire-water pressure transmitter on RS-485, Modbus RTU, common Chinese register map.

Holding registers (see README.md for the source): 0x0002 pressure unit code,
0x0003 decimal places, 0x0004 measured value as signed 16-bit. The driver
reads the registers it needs — in one request when they are contiguous —
and publishes ``pressure`` in MPa whatever unit the transmitter is set to.

>>> to_mpa(raw=350, decimals=3, unit_code=0)      # 0.350 MPa
0.35
>>> to_mpa(raw=-125, decimals=1, unit_code=1)     # -12.5 kPa
-0.0125
>>> to_mpa(raw=1450, decimals=1, unit_code=6)     # 145.0 psi
0.99974
"""

from __future__ import annotations

import math
from typing import Any

from drivers.base import Bus, Driver, Measurement
from drivers.codecs.modbus import MAX_REGISTERS, ModbusException, read_registers
from drivers.errors import DeviceFault, DriverError, FrameError, TransportTimeout
from drivers.options import Option, validate_options
from drivers.retry import attempts_for, with_retries

#: Unit code in register 0x0002 → (symbol, MPa per unit). Codes 0–8 as in the
#: vendor manual; factors from the SI definitions (kgf = 9.80665 N,
#: lbf/in² = 6894.757293168 Pa, conventional metre of water = 9806.65 Pa).
UNITS: dict[int, tuple[str, float]] = {
    0: ("MPa", 1.0),
    1: ("kPa", 1e-3),
    2: ("Pa", 1e-6),
    3: ("bar", 0.1),
    4: ("mbar", 1e-4),
    5: ("kgf/cm2", 0.0980665),
    6: ("psi", 6.894757293168e-3),
    7: ("mH2O", 9.80665e-3),
    8: ("mmH2O", 9.80665e-6),
}
UNIT_CODES = {symbol: code for code, (symbol, _) in UNITS.items()}
MAX_DECIMALS = 4

DEFAULT_UNIT_REGISTER = 2
DEFAULT_DECIMALS_REGISTER = 3

# A device busy with itself answers the next try; other exceptions are definite.
_RETRYABLE_EXCEPTION_CODES = (5, 6)  # acknowledge, server device busy


def to_mpa(raw: int, decimals: int, unit_code: int) -> float:
    """Convert a transmitter reading to MPa, rounded one digit below its resolution.

    Rounding removes binary noise (350 × 0.001 = 0.35000000000000003) while
    keeping every digit the instrument can resolve.
    """
    symbol_factor = UNITS.get(unit_code)
    if symbol_factor is None:
        raise ValueError(f"unknown pressure unit code {unit_code}")
    factor = symbol_factor[1]
    resolution = factor / 10**decimals
    digits = max(0, math.ceil(-math.log10(resolution)) + 1)
    return round(raw * factor / 10**decimals, digits)


def _signed16(value: int) -> int:
    return value - 0x10000 if value & 0x8000 else value


def _contiguous_runs(registers: list[int]) -> list[tuple[int, int]]:
    """``[(start, count), …]`` covering the sorted distinct registers without gaps.

    >>> _contiguous_runs([4, 2, 3, 10])
    [(2, 3), (10, 1)]
    """
    runs: list[tuple[int, int]] = []
    for register in sorted(set(registers)):
        if runs and runs[-1][0] + runs[-1][1] == register and runs[-1][1] < MAX_REGISTERS:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((register, 1))
    return runs


class ModbusPressure(Driver):
    """A Modbus RTU pressure transmitter; ``read()`` returns one ``pressure`` in MPa."""

    name = "modbus_pressure"
    bus_kind = "serial"
    quantities = ("pressure",)
    options = {
        "address": Option("int", required=True, min=1, max=247, help="Modbus unit id of the transmitter"),
        "value_register": Option("int", default=4, min=0, max=65535, help="register of the signed value"),
        "decimals_register": Option("int", min=0, max=65535,
                                    help=f"register of the decimal places (default {DEFAULT_DECIMALS_REGISTER} "
                                         "unless decimals is set)"),
        "decimals": Option("int", min=0, max=MAX_DECIMALS, help="fixed decimal places, instead of a register"),
        "unit_register": Option("int", min=0, max=65535,
                                help=f"register of the unit code (default {DEFAULT_UNIT_REGISTER} unless unit is set)"),
        "unit": Option("str", choices=tuple(UNIT_CODES), help="fixed unit, instead of a register"),
        "function": Option("int", default=3, choices=(3, 4), help="3 holding or 4 input registers"),
        "retries": Option("int", default=2, min=0, max=5, help="extra attempts after a timeout or garbled answer"),
    }

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems between keys that :func:`validate_options` checks one by one.

        >>> ModbusPressure.check_options({"address": 1, "decimals": 2, "decimals_register": 3})
        [('decimals', 'conflicts with "decimals_register": give a fixed value or a register, not both')]
        """
        defaults, _ = validate_options(cls.options, {})
        values = {**defaults, **values}
        problems = []
        for fixed, register in (("decimals", "decimals_register"), ("unit", "unit_register")):
            if values.get(fixed) is not None and values.get(register) is not None:
                problems.append((fixed, f'conflicts with "{register}": give a fixed value or a register, not both'))
        if problems:
            return problems
        seen: dict[int, str] = {}
        for key, register in _register_map(values).items():
            if register in seen:
                # Blame the key the user wrote, not the one left at its default.
                blamed, other = (seen[register], key) if values.get(key) is None else (key, seen[register])
                problems.append((blamed, f'is the same register ({register}) as "{other}"'))
            seen.setdefault(register, key)
        return problems

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        defaults, _ = validate_options(self.options, {})
        merged = {**defaults, **options}
        problems = self.check_options(merged)
        if problems:
            raise ValueError("; ".join(f"{key}: {message}" for key, message in problems))
        super().__init__(sensor_id, merged, bus)
        self.unit_id: int = merged["address"]
        self.function: int = merged["function"]
        self.retries: int = merged["retries"]
        self.registers = _register_map(merged)
        self._runs = _contiguous_runs(list(self.registers.values()))

    def read(self) -> list[Measurement]:
        values: dict[int, int] = {}
        for start, count in self._runs:
            values.update(zip(range(start, start + count), self._read_run(start, count), strict=True))
        raw = _signed16(values[self.registers["value_register"]])
        decimals = self._decimals(values)
        unit_code = self._unit_code(values)
        return [Measurement("pressure", to_mpa(raw, decimals, unit_code), "MPa")]

    def _decimals(self, values: dict[int, int]) -> int:
        if self.config["decimals"] is not None:
            return self.config["decimals"]
        register = self.registers["decimals_register"]
        decimals = values[register]
        if decimals > MAX_DECIMALS:
            raise DeviceFault(
                f"device {self.unit_id} reports {decimals} decimal places in register 0x{register:04X};"
                f" expected 0–{MAX_DECIMALS} — check decimals_register")
        return decimals

    def _unit_code(self, values: dict[int, int]) -> int:
        if self.config["unit"] is not None:
            return UNIT_CODES[self.config["unit"]]
        register = self.registers["unit_register"]
        code = values[register]
        if code not in UNITS:
            known = ", ".join(f"{c} {symbol}" for c, (symbol, _) in UNITS.items())
            raise DeviceFault(
                f"device {self.unit_id} reports unknown pressure unit code {code} in register 0x{register:04X}"
                f" (known: {known}) — set unit = \"…\" if its manual differs")
        return code

    def _read_run(self, start: int, count: int) -> list[int]:
        return with_retries(
            lambda: read_registers(self.bus, self.unit_id, start, count, self.function),
            attempts_for(self, self.retries),
            _retryable,
        )


def _retryable(exc: DriverError) -> bool:
    if isinstance(exc, ModbusException):
        return exc.code in _RETRYABLE_EXCEPTION_CODES
    return isinstance(exc, (TransportTimeout, FrameError))


def _register_map(values: dict[str, Any]) -> dict[str, int]:
    """The registers to read, by option name, defaults resolved."""
    registers = {"value_register": values["value_register"]}
    if values.get("decimals") is None:
        registers["decimals_register"] = _given_or(values.get("decimals_register"), DEFAULT_DECIMALS_REGISTER)
    if values.get("unit") is None:
        registers["unit_register"] = _given_or(values.get("unit_register"), DEFAULT_UNIT_REGISTER)
    return registers


def _given_or(value: int | None, default: int) -> int:
    return default if value is None else value
