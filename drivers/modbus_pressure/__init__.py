"""Fire-water pressure transmitter on RS-485, Modbus RTU, common Chinese register map.

A preset of the general :mod:`drivers.modbus` driver: its keys say where the
registers are, and the preset turns them into a register map — holding
registers 0x0002 pressure unit code, 0x0003 decimal places, 0x0004 measured
value as signed 16-bit (see README.md for the source). The general driver
reads them, in one request when they are contiguous; the preset publishes
``pressure`` in MPa whatever unit the transmitter is set to.

>>> to_mpa(raw=350, decimals=3, unit_code=0)      # 0.350 MPa
0.35
>>> to_mpa(raw=-125, decimals=1, unit_code=1)     # -12.5 kPa
-0.0125
>>> to_mpa(raw=1450, decimals=1, unit_code=6)     # 145.0 psi
0.99974
>>> [(p.quantity, p.register, p.type) for p in ModbusPressure.points_for({"address": 1, "value_register": 4})]
[('pressure', 4, 'int16'), ('unit_code', 2, 'uint16')]
"""

from __future__ import annotations

import math
from typing import Any

from drivers.base import Measurement
from drivers.errors import DeviceFault
from drivers.modbus import Modbus
from drivers.modbus.registers import Point, Words
from drivers.options import Option, validate_options

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


class ModbusPressure(Modbus):
    """A Modbus RTU pressure transmitter; ``read()`` returns one ``pressure`` in MPa."""

    name = "modbus_pressure"
    quantities = ("pressure",)
    max_decimals = MAX_DECIMALS
    options = {
        "address": Option("int", required=True, min=1, max=247, help="Modbus unit id of the transmitter"),
        "value_register": Option("int", default=4, min=0, max=65535, help="register of the signed value"),
        "decimals_register": Option("int", min=0, max=65535,
                                    help=f"register of the decimal places (default {DEFAULT_DECIMALS_REGISTER} "
                                         "unless decimals is set)"),
        "decimals": Option("int", min=0, max=MAX_DECIMALS, help="fixed decimal places, instead of decimals_register"),
        "unit_register": Option("int", min=0, max=65535,
                                help=f"register of the unit code (default {DEFAULT_UNIT_REGISTER} unless unit is set)"),
        "unit": Option("str", choices=tuple(UNIT_CODES), help="fixed unit, instead of unit_register"),
        "function": Option("int", default=3, choices=(3, 4), help="3 holding or 4 input registers"),
        "retries": Option("int", default=2, min=0, max=5,
                           help="extra attempts after a timeout, a garbled answer or a \"device busy\" answer"),
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

    @classmethod
    def quantities_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        return cls.quantities

    @classmethod
    def points_for(cls, values: dict[str, Any]) -> list[Point]:
        """The register map these keys describe: the signed value with its decimals, and the unit code."""
        defaults, _ = validate_options(cls.options, {})
        values = {**defaults, **values}
        registers = _register_map(values)
        table = "holding" if values["function"] == 3 else "input"
        points = [Point("pressure", "MPa", registers["value_register"], "int16", table=table,
                        decimals=values["decimals"], decimals_register=registers.get("decimals_register"))]
        if "unit_register" in registers:
            points.append(Point("unit_code", "1", registers["unit_register"], "uint16", table=table))
        return points

    def read(self) -> list[Measurement]:
        words = self.read_words()
        pressure = self.points[0]
        raw = pressure.raw(words)
        return [Measurement("pressure", to_mpa(raw, self.decimals(pressure, words), self._unit_code(words)), "MPa")]

    def _unit_code(self, words: Words) -> int:
        if self.config["unit"] is not None:
            return UNIT_CODES[self.config["unit"]]
        point = self.points[1]
        code = point.raw(words)
        if code not in UNITS:
            known = ", ".join(f"{c} {symbol}" for c, (symbol, _) in UNITS.items())
            raise DeviceFault(
                f"device {self.unit_id} reports unknown pressure unit code {code} in register 0x{point.register:04X}"
                f" (known: {known}) — set unit = \"…\" if its manual differs")
        return code


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
