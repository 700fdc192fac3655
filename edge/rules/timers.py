"""The engine's pending timers, earliest first, so a reading costs its own rules and not every rule's.

A street gateway has hundreds of rules and each reading changes the timers of two
or three of them; scanning all of them for the earliest one on every reading made
the cost of a reading grow with the street. Here the due times sit in a min-heap.

>>> timers = TimerQueue(3)
>>> timers.set(0, 500); timers.set(1, 200); timers.set(2, 200)
>>> timers.earliest()
(200, 1)
>>> timers.set(1, None); timers.earliest()
(200, 2)
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

#: Stale entries tolerated beyond twice the number of timers before the heap is rebuilt from the live ones.
_SLACK = 64


class TimerQueue:
    """The due time (ms) of each of ``count`` numbered timers, or ``None``; the earliest found in O(log n).

    Of timers due at the same time the lowest number comes first, as a scan in
    number order finds them. Setting a timer leaves its old heap entry behind,
    recognised as stale by its version and dropped once it reaches the top (lazy
    invalidation); the heap is rebuilt from the live timers when it grows past
    twice their count, so it stays small however long a trace is.
    """

    def __init__(self, count: int):
        self._due: list[int | None] = [None] * count
        self._version = [0] * count
        self._heap: list[tuple[int, int, int]] = []

    def due(self, number: int) -> int | None:
        return self._due[number]

    def set(self, number: int, due: int | None) -> None:
        """Timer ``number`` is due at ``due`` now (``None``: it has no timer)."""
        if due == self._due[number]:
            return  # its entry in the heap is still the right one
        self._due[number] = due
        self._version[number] += 1
        if due is not None:
            heappush(self._heap, (due, number, self._version[number]))
            if len(self._heap) > 2 * len(self._due) + _SLACK:
                self._rebuild()

    def earliest(self) -> tuple[int, int] | None:
        """``(due, number)`` of the timer due first, or ``None`` when none is set."""
        heap, versions = self._heap, self._version
        while heap:
            due, number, version = heap[0]
            if version == versions[number]:
                return due, number
            heappop(heap)
        return None

    def _rebuild(self) -> None:
        self._heap = [(due, number, self._version[number]) for number, due in enumerate(self._due) if due is not None]
        heapify(self._heap)
