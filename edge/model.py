"""Where a reading is born: a driver's Measurement stamped with time becomes a record.

Records are plain dicts because they go straight into the outbox as JSON and
from there into MQTT payloads (docs/design.md, Topics and payloads).
"""

from __future__ import annotations

import math
from typing import Any

from drivers.base import Measurement


def reading_record(sensor: str, measurement: Measurement, stamp: dict[str, Any]) -> dict[str, Any]:
    """A reading as stored in the outbox: the measurement plus ``ts``, ``synced``, ``boot``, ``mono``.

    >>> m = Measurement("pressure", 0.42, "MPa")
    >>> reading_record("pump-pressure", m, {"ts": 1, "synced": True, "boot": "b", "mono": 5})["value"]
    0.42
    >>> reading_record("pump-pressure", Measurement("pressure", float("nan"), "MPa"), {})["quality"]
    'bad'
    """
    value, quality, reason = measurement.value, measurement.quality, measurement.reason
    if isinstance(value, float) and not math.isfinite(value):
        # NaN/inf is not JSON and never a real pressure or volume: report it, do not pass it on.
        value, quality, reason = None, "bad", "not_a_number"
    record: dict[str, Any] = {
        "kind": "reading",
        "sensor": sensor,
        "quantity": measurement.quantity,
        "value": value,
        "unit": measurement.unit,
        "quality": quality,
        **stamp,
    }
    if reason:
        record["reason"] = reason
    return record


def failure_records(sensor: str, quantities: tuple[str, ...], reason: str, message: str,
                    stamp: dict[str, Any]) -> list[dict[str, Any]]:
    """``bad`` readings for a sensor whose read failed: one per quantity it normally reports.

    The value is ``None`` — never a stale or made-up number — and ``error`` says why.
    """
    records = []
    for quantity in quantities or ("status",):
        records.append({
            "kind": "reading",
            "sensor": sensor,
            "quantity": quantity,
            "value": None,
            "unit": None,
            "quality": "bad",
            "reason": reason,
            "error": message,
            **stamp,
        })
    return records
