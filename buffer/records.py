"""What the outbox holds: records with a priority, serialised once, when they are added.

>>> serialise({"sensor": "meter", "value": 1.5, "ts": 1764201600123}, Priority.TELEMETRY)
PendingRecord(priority=2, ts=1764201600123, body='{"sensor":"meter","value":1.5,"ts":1764201600123}')
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import NamedTuple

from buffer.errors import OutboxRecordError


class Priority(enum.IntEnum):
    """Lower goes first: the reader hands out all alarms before any status, and status before telemetry."""

    ALARM = 0
    STATUS = 1
    TELEMETRY = 2


_PRIORITIES = frozenset(Priority)


@dataclass(frozen=True)
class Row:
    """A record for the reader: its ``seq``, its priority and its body (which never contains ``seq``)."""

    seq: int
    priority: int
    body: dict


class PendingRecord(NamedTuple):  # a NamedTuple: built once per record, it must be cheap
    """A record serialised at ``add`` time: priority, its ``ts`` (or None) and the JSON body."""

    priority: int
    ts: int | None
    body: str


# One encoder for all records (json.dumps with options builds a new one per call).
# allow_nan=False: NaN/Infinity are not JSON; the central side would refuse the message forever.
dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def serialise(record: dict, priority: Priority) -> PendingRecord:
    """``record`` as the outbox stores it; :class:`OutboxRecordError` for one that cannot be stored."""
    if priority not in _PRIORITIES or isinstance(priority, bool):
        raise OutboxRecordError(f"unknown priority {priority!r}; use Priority.ALARM, STATUS or TELEMETRY")
    if not isinstance(record, dict):
        raise OutboxRecordError(f"a record must be a dict, not {type(record).__name__}")
    if "seq" in record:
        raise OutboxRecordError("a record must not carry 'seq': the outbox assigns it")
    ts = record.get("ts")
    if not (isinstance(ts, int) and not isinstance(ts, bool)):
        if priority == Priority.TELEMETRY:
            raise OutboxRecordError(f"a telemetry record needs 'ts' in integer epoch milliseconds, got {ts!r}")
        ts = None
    try:
        body = dumps(record)
    except (TypeError, ValueError) as exc:
        raise OutboxRecordError(f"record is not JSON-able: {exc}") from None
    return PendingRecord(int(priority), ts, body)
