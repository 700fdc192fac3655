"""Honeywell HSC / SSC / ABP digital pressure sensors (I2C): status bits, transfer function, temperature.

Source: Honeywell technical note "I2C Communications with Honeywell Digital
Output Pressure Sensors" (008201), §2 — a plain I2C read (no register
pointer) returns up to four bytes::

    byte 1: S1 S0 B13..B8    status and bridge (pressure) data, high bits
    byte 2: B7..B0
    byte 3: T10..T3          optional temperature, 8-bit resolution
    byte 4: T2 T1 T0 x x x x x   the 5 low bits are "do not care"

Status S1 S0: 00 normal, 01 command mode, 10 stale (already fetched since the
last measurement cycle), 11 diagnostic condition. The TruStability HSC/SSC
datasheets give the output as a percentage of 2^14 counts between
``p_min`` and ``p_max`` — transfer function A is 10 % to 90 %, i.e. 1638 to
14745 counts (0x0666–0x3999) — and the temperature as
``counts / 2047 × 200 − 50`` °C.

>>> sample = parse(bytes([0x06, 0x66, 0x66, 0x7F]))
>>> sample.status, sample.counts, sample.temperature_counts
(0, 1638, 819)
>>> pressure(1638, 0.0, 1.6, "10-90"), pressure(14745, 0.0, 1.6, "10-90")
(0.0, 1.6)
>>> round(temperature_c(819), 2)
30.02
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STATUS_NORMAL = 0
STATUS_COMMAND_MODE = 1
STATUS_STALE = 2
STATUS_DIAGNOSTIC = 3

FULL_COUNTS = 1 << 14
#: Transfer functions as % of 2^14 counts (HSC/SSC datasheets, "Transfer Function" A, B, C, F); the
#: counts are truncated as the datasheets print 10 % → 1638 and 90 % → 14745.
TRANSFER_PERCENT = {"10-90": (10, 90), "5-95": (5, 95), "5-85": (5, 85), "4-94": (4, 94)}
TRANSFER = {name: (FULL_COUNTS * low // 100, FULL_COUNTS * high // 100)
            for name, (low, high) in TRANSFER_PERCENT.items()}
TEMPERATURE_FULL = 2047


@dataclass(frozen=True)
class Sample:
    """One read: status, 14-bit pressure counts and, when 3 or 4 bytes were read, 11-bit temperature counts."""

    status: int
    counts: int
    temperature_counts: int | None


def parse(data: bytes) -> Sample:
    """Split a 2-, 3- or 4-byte read into its fields (3 bytes: temperature at 8-bit resolution).

    >>> parse(bytes([0x86, 0x66]))
    Sample(status=2, counts=1638, temperature_counts=None)
    """
    if not 2 <= len(data) <= 4:
        raise ValueError(f"a Honeywell sensor read is 2 to 4 bytes, got {len(data)}")
    status, counts = data[0] >> 6, (data[0] & 0x3F) << 8 | data[1]
    temperature = None
    if len(data) >= 3:
        temperature = data[2] << 3 | (data[3] >> 5 if len(data) == 4 else 0)
    return Sample(status, counts, temperature)


def encode(status: int, counts: int, temperature_counts: int, length: int = 4, filler: int = 0) -> bytes:
    """The bytes a sensor sends (``filler`` fills the 5 "do not care" bits); the inverse of :func:`parse`.

    >>> encode(0, 14745, 1024, filler=0b10101).hex(" ")
    '39 99 80 15'
    """
    data = bytes([status << 6 | counts >> 8, counts & 0xFF, temperature_counts >> 3 & 0xFF,
                  (temperature_counts & 0b111) << 5 | filler & 0x1F])
    return data[:length]


def pressure(counts: int, p_min: float, p_max: float, transfer: str) -> float:
    """``(counts − Omin) × (p_max − p_min) / (Omax − Omin) + p_min``, rounded below the sensor's resolution."""
    low, high = TRANSFER[transfer]
    step = (p_max - p_min) / (high - low)
    digits = max(0, math.ceil(-math.log10(abs(step))) + 1)
    return round((counts - low) * step + p_min, digits)


def counts_for(value: float, p_min: float, p_max: float, transfer: str) -> int:
    """The counts a sensor outputs at pressure ``value`` (clipped to 14 bits): the transfer function itself.

    >>> counts_for(0.8, 0.0, 1.6, "10-90")
    8192
    """
    low, high = TRANSFER[transfer]
    counts = round(low + (value - p_min) * (high - low) / (p_max - p_min))
    return min(max(counts, 0), FULL_COUNTS - 1)


def in_range(counts: int, transfer: str) -> bool:
    """Whether counts lie within the transfer function's limits (the compensated range)."""
    low, high = TRANSFER[transfer]
    return low <= counts <= high


def temperature_c(counts: int) -> float:
    """Temperature of 11-bit counts: ``counts / 2047 × 200 − 50`` °C, rounded to 0.01 °C (resolution ≈ 0.1 °C)."""
    return round(counts / TEMPERATURE_FULL * 200 - 50, 2)


def temperature_counts(celsius: float) -> int:
    """The 11-bit counts of a temperature (clipped to −50…150 °C).

    >>> temperature_counts(-50.0), temperature_counts(150.0)
    (0, 2047)
    """
    return min(max(round((celsius + 50) * TEMPERATURE_FULL / 200), 0), TEMPERATURE_FULL)
