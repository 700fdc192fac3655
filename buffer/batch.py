"""The writer's uncommitted work, held in memory until the next group commit.

Bounded: when more than ``max_records`` records wait (the disk is full and
commits keep failing), the oldest pending telemetry is shed and tallied in a
:class:`Shed`, which the next successful commit turns into a ``dropped`` record —
nothing is lost without saying so. Alarms and status records are never shed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

TELEMETRY = 2  # Priority.TELEMETRY; a plain int here so this module needs nothing from outbox.py


class PendingRecord(NamedTuple):  # a NamedTuple: built once per record, it must be cheap
    """A record serialised at ``add`` time: priority, its ``ts`` (or None) and the JSON body."""

    priority: int
    ts: int | None
    body: str


@dataclass
class Shed:
    """How many pending telemetry records were dropped in memory and their ``ts`` range.

    >>> tally = Shed()
    >>> tally.include([PendingRecord(2, 30, "{}"), PendingRecord(2, 10, "{}")])
    >>> (tally.count, tally.ts_from, tally.ts_to)
    (2, 10, 30)
    """

    count: int = 0
    ts_from: int | None = None
    ts_to: int | None = None

    def include(self, records: list[PendingRecord]) -> None:
        for record in records:
            self.count += 1
            if record.ts is not None:
                self.ts_from = record.ts if self.ts_from is None else min(self.ts_from, record.ts)
                self.ts_to = record.ts if self.ts_to is None else max(self.ts_to, record.ts)


@dataclass
class Batch:
    """Records, acks and state changes not yet committed, and since when they wait."""

    max_records: int
    records: list[PendingRecord] = field(default_factory=list)
    acks: set[int] = field(default_factory=set)
    state: dict[str, str] = field(default_factory=dict)
    shed: Shed = field(default_factory=Shed)
    since: float | None = None  # clock() when the oldest uncommitted work arrived
    body_bytes: int = 0

    def add(self, record: PendingRecord, now: float) -> None:
        if len(self.records) >= self.max_records:
            self._shed_oldest_telemetry()
        self.records.append(record)
        self.body_bytes += len(record.body)
        self._touch(now)

    def ack(self, seqs: set[int], now: float) -> None:
        if seqs:
            self.acks |= seqs
            self._touch(now)

    def set_state(self, key: str, value_json: str, now: float) -> None:
        self.state[key] = value_json
        self._touch(now)

    def has_work(self) -> bool:
        return bool(self.records or self.acks or self.state or self.shed.count)

    def size(self) -> int:
        """Records plus acks waiting: what the commit-by-count threshold counts."""
        return len(self.records) + len(self.acks)

    def urgent_records(self) -> list[PendingRecord]:
        """The pending alarms and status records: what gets disk space first when space is short."""
        return [r for r in self.records if r.priority != TELEMETRY]

    def committed(self, records_written: list[PendingRecord], now: float) -> None:
        """Forget what a successful commit wrote: acks, state, the shed tally and ``records_written``."""
        self.acks.clear()
        self.state.clear()
        self.shed = Shed()
        if len(records_written) == len(self.records):
            self.records = []
        else:
            written = {id(r) for r in records_written}
            self.records = [r for r in self.records if id(r) not in written]
        self.body_bytes = sum(len(r.body) for r in self.records)
        self.since = now if self.records else None

    def retry_later(self, now: float) -> None:
        """A commit failed: count the interval again from now, so the writer does not spin."""
        self.since = now

    def _touch(self, now: float) -> None:
        if self.since is None:
            self.since = now

    def _shed_oldest_telemetry(self) -> None:
        # A tenth of the bound at a time, so a full disk costs one sweep per many adds, not one per add.
        quota = max(1, self.max_records // 10)
        shed, kept = [], []
        for record in self.records:
            if record.priority == TELEMETRY and len(shed) < quota:
                shed.append(record)
            else:
                kept.append(record)
        if shed:
            self.shed.include(shed)
            self.records = kept
            self.body_bytes = sum(len(r.body) for r in kept)
