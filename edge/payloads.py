"""The JSON payloads the uplink publishes (docs/design.md, Topics and payloads), as bytes ready for paho.

Every payload has ``"v": 1`` and the gateway id; the shapes are pinned by the
schemas in ``edge/schemas/``. Telemetry is cut into batches bounded by a record
count and a byte size, measured on the exact bytes that go on the wire.

>>> batcher = TelemetryBatcher("gw-1", "boot-a", max_records=2, max_bytes=10_000)
>>> rows = [(7, {"kind": "reading", "sensor": "s", "value": 1}), (8, {"kind": "dropped", "count": 3})]
>>> [batch.seqs for batch in batcher.batches(rows + [(9, {"kind": "reading", "sensor": "s", "value": 2})])]
[[7, 8], [9]]
>>> json.loads(next(batcher.batches(rows)).payload)["records"][0]
{'seq': 7, 'sensor': 's', 'value': 1}
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("linli.uplink")

VERSION = 1


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and ±infinity replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON. Non-finite floats become ``null`` (logged) instead of invalid JSON.

    >>> encode({"v": 1, "value": float("nan"), "unit": "m³"})
    b'{"v":1,"value":null,"unit":"m\\xc2\\xb3"}'
    """
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        log.warning("a payload held NaN or infinity; sent as null: %.200r", obj)
        text = json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def status(gateway: str, state: str, *, version: str, boot: str, ts: int) -> bytes:
    """Birth (``online``), clean goodbye and Last Will (``offline``)."""
    return encode({"v": VERSION, "gateway": gateway, "state": state, "version": version, "boot": boot, "ts": ts})


def health(gateway: str, ts: int, facts: dict[str, Any]) -> bytes:
    """``{"v", "gateway", "ts", **facts}``; facts never override the envelope keys."""
    body: dict[str, Any] = {"v": VERSION, "gateway": gateway, "ts": ts}
    body.update((k, v) for k, v in facts.items() if k not in body)
    return encode(body)


_ENVELOPE = ("v", "gateway", "seq", "kind")


def alarm(gateway: str, seq: int, body: dict[str, Any]) -> bytes:
    """One alarm transition; also the retained state of that alarm (same bytes).

    >>> alarm("gw-1", 12, {"kind": "alarm", "alarm": "p/low", "state": "raised"})
    b'{"v":1,"gateway":"gw-1","seq":12,"alarm":"p/low","state":"raised"}'
    """
    return _alone(gateway, seq, body)


def event(gateway: str, seq: int, body: dict[str, Any]) -> bytes:
    """One change made by a command (:mod:`edge.events`).

    >>> event("gw-1", 13, {"kind": "event", "event": "away", "outcome": "applied"})
    b'{"v":1,"gateway":"gw-1","seq":13,"event":"away","outcome":"applied"}'
    """
    return _alone(gateway, seq, body)


def _alone(gateway: str, seq: int, body: dict[str, Any]) -> bytes:
    """A record sent in a message of its own: the envelope, then the stored body without its kind."""
    message: dict[str, Any] = {"v": VERSION, "gateway": gateway, "seq": seq}
    message.update((k, v) for k, v in body.items() if k not in _ENVELOPE)
    return encode(message)


def telemetry_record(seq: int, body: dict[str, Any]) -> bytes:
    """One record of a telemetry batch: ``seq`` first, then the stored body.

    Readings leave their ``"kind": "reading"`` behind (a record without a kind is
    a reading: docs/design.md, Topics and payloads); every other kind, such as ``dropped``, keeps it.
    """
    record: dict[str, Any] = {"seq": seq}
    record.update((k, v) for k, v in body.items()
                  if k != "seq" and not (k == "kind" and v == "reading"))
    return encode(record)


@dataclass(frozen=True)
class Batch:
    """A telemetry message: its payload, the seqs it carries (in order), and whether a bound closed it."""

    payload: bytes
    seqs: list[int]
    full: bool = True       # False: the rows ran out first, more rows could still have joined


class TelemetryBatcher:
    """Cuts records into telemetry payloads of at most ``max_records`` records and ``max_bytes`` bytes.

    A single record bigger than ``max_bytes`` is still sent, alone in its batch:
    refusing it would block everything queued behind it.
    """

    def __init__(self, gateway: str, boot: str, *, max_records: int, max_bytes: int):
        if max_records < 1 or max_bytes < 1:
            raise ValueError(f"batch bounds must be positive, got {max_records} records / {max_bytes} bytes")
        envelope = encode({"v": VERSION, "gateway": gateway, "boot": boot, "records": []})
        self._head = envelope[:-2]              # the envelope up to and including the records' "["
        self._tail = b"]}"
        self.max_records = max_records
        self.max_bytes = max_bytes

    def batches(self, rows: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[Batch]:
        """Lazily yield batches for ``(seq, body)`` rows, keeping their order."""
        parts: list[bytes] = []
        seqs: list[int] = []
        size = len(self._head) + len(self._tail)
        for seq, body in rows:
            record = telemetry_record(seq, body)
            extra = len(record) + (1 if parts else 0)     # the comma between records
            if parts and (len(parts) >= self.max_records or size + extra > self.max_bytes):
                yield self._close(parts, seqs, full=True)
                parts, seqs = [], []
                size = len(self._head) + len(self._tail)
                extra = len(record)
            parts.append(record)
            seqs.append(seq)
            size += extra
        if parts:
            yield self._close(parts, seqs, full=len(parts) >= self.max_records)

    def _close(self, parts: list[bytes], seqs: list[int], full: bool) -> Batch:
        return Batch(self._head + b",".join(parts) + self._tail, seqs, full)
