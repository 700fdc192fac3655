"""Records that have a seq but are not on disk: they wait in memory for the broker's PUBACK.

Most telemetry never leaves this place for the disk: the uplink fetches it from
here, the broker acknowledges it within milliseconds and the writer forgets it
(docs/decisions/0005-sd-card-writes.md). What is not acknowledged in time is
*spilled* to the outbox file by the writer.

Two threads share it: the outbox's writer puts, spills and forgets records; the
uplink's reader fetches them. One lock guards it and nothing done under the lock
touches the disk.

>>> hot = HotRecords()
>>> hot.put(7, PendingRecord(2, 1000, '{"v":1}'), now=5.0)
>>> hot.put(8, PendingRecord(0, None, '{"a":1}'), now=6.0)
>>> [seq for seq, _ in hot.after(2, 0, 10)], hot.oldest(), len(hot)
([7], 5.0, 2)
>>> sorted(hot.forget([7, 99])), len(hot)
([7], 1)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from buffer.records import PendingRecord

PRIORITIES = (0, 1, 2)   # Priority.ALARM, STATUS, TELEMETRY; plain ints so this module stands alone
TELEMETRY = 2


class HotRecords:
    """Records by priority and seq, each with the monotonic time it arrived (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per priority, seq → (record, arrived). Seqs are handed out in increasing order and
        # dicts keep insertion order, so each dict is sorted by seq and its first entry is its oldest.
        self._held: dict[int, dict[int, tuple[PendingRecord, float]]] = {p: {} for p in PRIORITIES}
        self._count = 0
        self.body_bytes = 0

    def __len__(self) -> int:
        return self._count

    def put(self, seq: int, record: PendingRecord, now: float) -> None:
        with self._lock:
            self._held[record.priority][seq] = (record, now)
            self._count += 1
            self.body_bytes += len(record.body)

    def forget(self, seqs: Iterable[int]) -> set[int]:
        """Drop these seqs (acknowledged, or now on disk); returns those that were held."""
        gone: set[int] = set()
        with self._lock:
            for seq in seqs:
                for held in self._held.values():
                    entry = held.pop(seq, None)
                    if entry is not None:
                        gone.add(seq)
                        self.body_bytes -= len(entry[0].body)
                        break
            self._count -= len(gone)
        return gone

    def oldest(self) -> float | None:
        """When the oldest held record arrived (monotonic), or None when nothing is held."""
        with self._lock:
            firsts = [next(iter(held.values()))[1] for held in self._held.values() if held]
        return min(firsts) if firsts else None

    def ts_range(self) -> tuple[int | None, int | None]:
        """The smallest and largest ``ts`` among the held records (for ``stats``)."""
        with self._lock:
            stamps = [record.ts for held in self._held.values() for record, _ in held.values()
                      if record.ts is not None]
        return (min(stamps), max(stamps)) if stamps else (None, None)

    def count_by_priority(self) -> dict[int, int]:
        with self._lock:
            return {p: len(held) for p, held in self._held.items()}

    def all(self) -> list[tuple[int, PendingRecord]]:
        """Every held record in seq order (what a spill writes); they stay held until ``forget``."""
        with self._lock:
            found = [(seq, record) for held in self._held.values() for seq, (record, _) in held.items()]
        found.sort()
        return found

    def after(self, priority: int, cursor: int, limit: int) -> list[tuple[int, PendingRecord]]:
        """Up to ``limit`` held records of ``priority`` with ``seq > cursor``, by seq."""
        found: list[tuple[int, PendingRecord]] = []
        if limit <= 0:
            return found
        with self._lock:
            for seq, (record, _) in self._held[priority].items():
                if seq > cursor:
                    found.append((seq, record))
                    if len(found) >= limit:
                        break
        return found

    def take_oldest_telemetry(self, count: int) -> list[tuple[int, PendingRecord]]:
        """Remove and return up to ``count`` of the oldest telemetry records (shedding when memory is full)."""
        taken: list[tuple[int, PendingRecord]] = []
        with self._lock:
            held = self._held[TELEMETRY]
            for seq in list(held)[:count]:
                record, _ = held.pop(seq)
                taken.append((seq, record))
                self.body_bytes -= len(record.body)
            self._count -= len(taken)
        return taken
