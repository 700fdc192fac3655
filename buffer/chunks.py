"""Telemetry on disk in compressed chunks: one row per spill, zlib over the records' JSON.

SQLite writes whole pages, each twice in WAL mode (the log, then the checkpoint),
so a few hundred bytes of reading cost kilobytes if stored row by row. A spill
of many readings compressed into one blob costs a fraction of their JSON instead
(docs/decisions/0005-sd-card-writes.md). Alarms and status records stay one row
each in the ``outbox`` table: they are few, and each is committed on its own.

>>> blob = encode([(5, '{"v":1}'), (7, '{"v":2}')])
>>> decode(blob)
[(5, {'v': 1}), (7, {'v': 2})]
"""

from __future__ import annotations

import bisect
import json
import zlib
from collections.abc import Callable, Iterable

#: zlib level: 6 (the default) gets ~90 % of level 9's ratio on readings at a third of the CPU.
LEVEL = 6


def encode(records: Iterable[tuple[int, str]]) -> bytes:
    """``(seq, body JSON)`` pairs as one compressed JSON array of ``[seq, body]``."""
    text = "[" + ",".join(f"[{seq},{body}]" for seq, body in records) + "]"
    return zlib.compress(text.encode(), LEVEL)


def decode(blob: bytes) -> list[tuple[int, dict]]:
    """The ``(seq, body)`` pairs of a chunk, in seq order."""
    return [(seq, body) for seq, body in json.loads(zlib.decompress(blob))]


class ChunkIndex:
    """Which chunk holds a seq, and which of its records the broker has acknowledged (writer thread only).

    A chunk's seqs are not contiguous (alarms committed meanwhile have seqs between
    them), so a chunk's members are read from disk, once, when its first
    acknowledgement arrives; only chunks being delivered hold that set in memory.

    >>> index = ChunkIndex([(1, 4, 3)], members=lambda first: {1, 2, 4})
    >>> index.ack(3), index.ack(1), index.ack(2), index.ack(4)     # 3 is an alarm's seq, not in the chunk
    ((False, None), (True, None), (True, None), (True, 1))
    >>> index.ack(2), len(index)                                   # still listed until remove()
    ((True, None), 1)
    """

    def __init__(self, chunks: Iterable[tuple[int, int, int]], members: Callable[[int], set[int]]):
        self._firsts: list[int] = []
        self._last: dict[int, int] = {}
        self._members = members
        self._unacked: dict[int, set[int]] = {}   # first seq → members not yet acknowledged
        for first, last, _count in sorted(chunks):
            self.add(first, last)

    def __len__(self) -> int:
        return len(self._firsts)

    def add(self, first: int, last: int) -> None:
        if self._firsts and first <= self._firsts[-1]:
            bisect.insort(self._firsts, first)
        else:
            self._firsts.append(first)
        self._last[first] = last

    def holding(self, seq: int) -> int | None:
        """The first seq of the chunk whose range covers ``seq``, or None."""
        i = bisect.bisect_right(self._firsts, seq) - 1
        if i < 0:
            return None
        first = self._firsts[i]
        return first if seq <= self._last[first] else None

    def ack(self, seq: int) -> tuple[bool, int | None]:
        """Note ``seq`` as acknowledged: (whether a chunk holds it, that chunk's first seq once all is acked)."""
        first = self.holding(seq)
        if first is None:
            return False, None
        unacked = self._unacked.get(first)
        if unacked is None:
            members = self._members(first)
            if seq not in members:
                return False, None
            unacked = self._unacked[first] = set(members)
        elif seq not in unacked:
            return self._is_member(first, seq), None
        unacked.discard(seq)
        return True, (first if not unacked else None)

    def _is_member(self, first: int, seq: int) -> bool:
        # Only reached for a repeated acknowledgement (a message sent twice): rare, so read the chunk again.
        return seq in self._members(first)

    def remove(self, first: int) -> None:
        i = bisect.bisect_left(self._firsts, first)
        if i < len(self._firsts) and self._firsts[i] == first:
            del self._firsts[i]
        self._last.pop(first, None)
        self._unacked.pop(first, None)

    def top(self) -> int:
        """The highest seq any chunk covers (0 when there is none)."""
        return max(self._last.values(), default=0)
