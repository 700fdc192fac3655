"""A pressure transmitter served by pymodbus's own Modbus RTU server behind a pseudo-terminal.

A :class:`~edge.simulate.modbus_device.ModbusDeviceSim` (pty, cable thread,
pymodbus server, wiring faults: :meth:`cut_wire`, :meth:`unplug`,
:meth:`plug_in`, :meth:`fail_with`) whose register map is the transmitter's:

    driver ── ttyRS485 (symlink) → pty A ══ cable thread ══ pty B ← ModbusSerialServer

The holding registers follow the map documented in
``drivers/modbus_pressure/README.md``; function 4 reads the same registers.
Their value follows a pressure profile, a function of the seconds since start
(see :func:`fire_main_profile`).
"""

from __future__ import annotations

import math
import os
import time

from drivers.modbus_pressure import UNITS
from edge.simulate.modbus_device import ModbusDeviceSim, Profile, as_profile

# Register map of the simulated transmitter (see the driver's README).
REG_ADDRESS, REG_BAUD, REG_UNIT, REG_DECIMALS, REG_VALUE, REG_RANGE_ZERO, REG_RANGE_FULL = range(7)
_BAUD_CODES = {1200: 0, 2400: 1, 4800: 2, 9600: 3, 19200: 4, 38400: 5, 57600: 6, 115200: 7}


def fire_main_profile(
    baseline: float = 0.35,
    dip_at: float = 60.0,
    dip_seconds: float = 20.0,
    dip_to: float = 0.08,
    ramp: float = 2.0,
    noise: float = 0.004,
) -> Profile:
    """Fire-main pressure in MPa over time: ``baseline`` with a little ripple, one dip to ``dip_to``.

    The dip starts at ``dip_at`` s, reaches ``dip_to`` after ``ramp`` s, stays
    until ``dip_at + dip_seconds`` and recovers over another ``ramp`` s. The
    ripple is a fixed sum of sines (at most ±``noise``), so a run is repeatable.

    >>> profile = fire_main_profile(noise=0.0)
    >>> profile(10.0), profile(70.0), profile(100.0)
    (0.35, 0.08, 0.35)
    """

    def level(t: float) -> float:
        if t < dip_at or t >= dip_at + dip_seconds + ramp:
            return baseline
        if t < dip_at + ramp:
            return baseline + (dip_to - baseline) * (t - dip_at) / ramp
        if t < dip_at + dip_seconds:
            return dip_to
        return dip_to + (baseline - dip_to) * (t - dip_at - dip_seconds) / ramp

    def pressure(t: float) -> float:
        ripple = 0.6 * math.sin(2 * math.pi * t / 7.3) + 0.4 * math.sin(2 * math.pi * t / 2.9)
        return level(t) + noise * ripple

    return pressure


def encode_pressure(mpa: float, unit_code: int, decimals: int) -> int:
    """The register value (two's complement) a transmitter shows for ``mpa``; saturates at int16.

    >>> encode_pressure(0.35, unit_code=1, decimals=1)   # 350.0 kPa
    3500
    >>> hex(encode_pressure(-0.0125, unit_code=0, decimals=3))
    '0xfff4'
    """
    raw = round(mpa / UNITS[unit_code][1] * 10**decimals)
    return max(-0x8000, min(0x7FFF, raw)) & 0xFFFF


class PressureTransmitterSim(ModbusDeviceSim):
    """One transmitter at ``unit_id`` on a simulated RS-485 line; use as a context manager.

    ``profile`` is the pressure in MPa as a function of seconds since start
    (or a constant). ``unit_code`` and ``decimals`` are how the transmitter is
    set up to show it. The driver connects to :attr:`port`.
    """

    def __init__(
        self,
        unit_id: int = 1,
        profile: Profile | float | None = None,
        *,
        unit_code: int = 0,
        decimals: int = 3,
        full_scale_mpa: float = 1.6,
        baudrate: int = 9600,
        parity: str = "N",
        bytesize: int = 8,
        stopbits: int = 1,
        link_dir: str | os.PathLike | None = None,
    ):
        if baudrate not in _BAUD_CODES:
            raise ValueError(f"a transmitter of this map supports {sorted(_BAUD_CODES)} Bd, not {baudrate}")
        self.unit_id = unit_id
        self._profile = as_profile(profile if profile is not None else fire_main_profile())
        self._unit_code = unit_code
        self._decimals = decimals
        self._full_scale = full_scale_mpa
        self._held_raw: int | None = None
        registers = {
            REG_ADDRESS: unit_id,
            REG_BAUD: _BAUD_CODES[baudrate],
            REG_UNIT: lambda _t: self._unit_code,
            REG_DECIMALS: lambda _t: self._decimals,
            REG_VALUE: self._value_word,
            REG_RANGE_ZERO: 0,
            REG_RANGE_FULL: lambda _t: encode_pressure(self._full_scale, self._shown_as(), self._decimals),
        }
        super().__init__(unit_id, registers, baudrate=baudrate, parity=parity, bytesize=bytesize,
                         stopbits=stopbits, link_dir=link_dir)

    def _shown_as(self) -> int:
        # A unit code outside the table (set to test the driver) is shown as if it were MPa.
        return self._unit_code if self._unit_code in UNITS else 0

    def _value_word(self, t: float) -> int:
        if self._held_raw is not None:
            return self._held_raw & 0xFFFF
        return encode_pressure(self._profile(t), self._shown_as(), self._decimals)

    def pressure(self) -> float:
        """The profile's pressure in MPa right now."""
        return self._profile(self.elapsed())

    # --- knobs for tests and the demo ----------------------------------------------------------
    def set_display(self, unit_code: int, decimals: int) -> None:
        """Change the unit code and decimal places the transmitter reports (any value, even invalid)."""
        with self._lock:
            self._unit_code, self._decimals = unit_code, decimals

    def set_profile(self, profile: Profile | float) -> None:
        """Follow another pressure profile, restarting its clock."""
        with self._lock:
            self._profile = as_profile(profile)
            self._held_raw = None
            self._t0 = time.monotonic()

    def hold(self, raw: int) -> None:
        """Freeze the value register at ``raw`` (signed), e.g. to test a conversion exactly."""
        with self._lock:
            self._held_raw = raw
