"""What both 60 GHz vital-sign radar codecs (MR60BHA1, MR60BHA2) decode a frame into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Value:
    """One value a frame carries: ``kind`` (presence, heart_rate, …), the value and its unit."""

    kind: str
    value: float | int | bool | None
    unit: str | None
