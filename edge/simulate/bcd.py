"""Packed BCD as meters send it, for the simulators' encoders (the codecs decode it independently).

>>> bcd_bytes(12345678, 4).hex(" ")
'78 56 34 12'
"""

from __future__ import annotations


def bcd_bytes(number: int, length: int) -> bytes:
    """``number`` as ``length`` bytes of packed BCD, least significant digit pair first (M-Bus and CJ/T 188 alike)."""
    digits = f"{number:0{2 * length}d}"
    if len(digits) > 2 * length or number < 0:
        raise ValueError(f"{number} does not fit {length} BCD bytes")
    return bytes.fromhex(digits)[::-1]
