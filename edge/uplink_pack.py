"""Outbox rows → publications: what the uplink publishes for a fetch, and which seqs each message settles.

An alarm row becomes one message on ``alarm`` plus its retained state on
``alarm/<sensor>/<rule>`` (one *unit*: the row is acknowledged when both are); an
``event`` row one message on ``event``; consecutive other rows (readings, ``dropped``
records) become telemetry batches.
Every unit records, per priority, the lowest seq it carries (where to rewind the
cursor if it is lost) and the highest (where the cursor moves once it is sent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge import payloads, topics

log = logging.getLogger("linli.uplink")

#: Record kinds published in a message of their own, on a topic of their own, never in a telemetry batch.
_ALONE = ("alarm", "event")


class RowLike(Protocol):
    """An outbox row as ``Outbox.fetch`` returns it."""

    seq: int
    priority: int
    body: dict


@dataclass
class Delivery:
    """The seqs carried by one unit, and the PUBACKs it still waits for."""

    seqs: list[int]
    floors: dict[int, int]          # priority → lowest seq carried, where to rewind if it is lost
    awaiting: int                   # PUBACKs still to come
    failed: bool = False


@dataclass
class Unit:
    """Messages that must be published together, and the delivery they settle."""

    messages: list[tuple[str, bytes, bool]]       # (topic, payload, retain)
    delivery: Delivery
    tops: dict[int, int] = field(default_factory=dict)   # priority → highest seq carried
    tail: bool = False              # a batch not full, made from the last rows of a fetch


def single(topic: str, payload: bytes, retain: bool) -> Unit:
    """A message that carries no outbox row (the ``status`` birth)."""
    return Unit([(topic, payload, retain)], Delivery([], {}, 1))


class Packer:
    """Turns fetched rows into units for the gateway with base topic ``base``."""

    def __init__(self, base: str, gateway: str, batcher: payloads.TelemetryBatcher,
                 correct: Callable[[dict[str, Any]], dict[str, Any]]):
        self.base = base
        self.gateway = gateway
        self.batcher = batcher
        self.correct = correct

    def units(self, rows: list[RowLike]) -> Iterator[Unit]:
        """Alarm and event rows one by one, runs of other rows in telemetry batches, in the rows' order.

        A batch that is not full and ends with the last row is marked ``tail``: more rows might join it.
        """
        i = 0
        while i < len(rows):
            kind = rows[i].body.get("kind")
            if kind in _ALONE:
                yield self._alarm(rows[i]) if kind == "alarm" else self._event(rows[i])
                i += 1
                continue
            j = i
            while j < len(rows) and rows[j].body.get("kind") not in _ALONE:
                j += 1
            yield from self._telemetry(rows[i:j], last_seq=rows[-1].seq)
            i = j

    def _telemetry(self, run: list[RowLike], last_seq: int) -> Iterator[Unit]:
        priority_of = {row.seq: row.priority for row in run}
        for batch in self.batcher.batches((row.seq, self.correct(row.body)) for row in run):
            floors: dict[int, int] = {}
            tops: dict[int, int] = {}
            for seq in batch.seqs:
                p = priority_of[seq]
                floors[p] = min(floors.get(p, seq), seq)
                tops[p] = max(tops.get(p, seq), seq)
            yield Unit([(topics.telemetry(self.base), batch.payload, False)], Delivery(batch.seqs, floors, 1),
                       tops, tail=not batch.full and batch.seqs[-1] == last_seq)

    def _event(self, row: RowLike) -> Unit:
        payload = payloads.event(self.gateway, row.seq, self.correct(row.body))
        return Unit([(topics.event(self.base), payload, False)], Delivery([row.seq], {row.priority: row.seq}, 1),
                    {row.priority: row.seq})

    def _alarm(self, row: RowLike) -> Unit:
        body = self.correct(row.body)
        payload = payloads.alarm(self.gateway, row.seq, body)
        messages = [(topics.alarm(self.base), payload, False)]
        try:
            messages.append((topics.alarm_state(self.base, body.get("alarm")), payload, True))
        except topics.TopicError as exc:
            # The transition itself still goes out; only the per-alarm retained topic cannot exist.
            log.error("alarm record %d has no retained state topic: %s", row.seq, exc)
        return Unit(messages, Delivery([row.seq], {row.priority: row.seq}, len(messages)), {row.priority: row.seq})
