"""What a ``routine`` rule learns of one home: how long its silences last, by the time of day they begin.

A *silence* runs from one use of water to the next. Each finished silence is
counted in the slot of the hour (local time) it began in, split into weekdays and
weekends (a silence belongs to the day it reaches six hours after it began, so
Friday night's sleep is a weekend night). Within a slot the durations go into
32 bins, each a fourth of an octave wide (15 min, 18 min, 21 min … 45 h).

Old silences weigh less: a silence counts half as much ``half_life`` later, so a
changed routine takes over within weeks while a year of history stays bounded at
48 × 32 numbers. Weights grow instead of shrinking (a new silence weighs
``2 ** (age / half_life)`` against a reference time) so learning is O(1); they are
scaled back now and then.

How long a silence beginning at a given moment may last before it is unusual
(:meth:`Routine.usual_longest`) is the ``quantile`` of the durations learned for
that slot, pooled with its neighbours two hours either side (nearer ones weigh
more) and with half the weight of the other day type, so a sparse slot borrows
from its neighbours and weekends from weekdays where they alike.

>>> model = Routine(half_life_ms=30 * 86_400_000, quantile=0.9)
>>> night = 1767621600000                      # 2026-01-05 22:00 in Asia/Shanghai
>>> for day in range(20):
...     model.learn(slot=22, duration_ms=9 * 3_600_000, now=night + day * 86_400_000)
>>> round(model.usual_longest(22, now=night + 20 * 86_400_000) / 3_600_000, 2)   # 8 h × 2 ** (0.9 / 4)
9.35
"""

from __future__ import annotations

import math
from typing import Any

HOUR_MS = 3_600_000
#: Bin b >= 1 holds durations below FIRST_EDGE_MS * 2 ** (b / BINS_PER_OCTAVE); bin 0 holds the shortest.
FIRST_EDGE_MS = 15 * 60_000
BINS_PER_OCTAVE = 4
BINS = 32
SLOTS = 48           # 24 hours of the day, weekdays then weekends
#: Neighbouring start hours pooled into a slot's estimate, and how much the other day type counts.
KERNEL_HOURS = 2
OTHER_DAY_TYPE = 0.5
#: Below this many silences (after ageing) near a slot, nothing is known there yet.
ENOUGH_SILENCES = 5.0
#: Weights are scaled back once the newest would exceed 2 ** this.
_RESCALE_EXPONENT = 40.0


def _pooling(slot: int) -> list[tuple[int, float]]:
    """``(slot, weight)`` of every slot whose counts go into ``slot``'s estimate."""
    hour, weekend = slot % 24, slot // 24
    found = []
    for shift in range(-KERNEL_HOURS, KERNEL_HOURS + 1):
        near = 1.0 / (1 + abs(shift))
        neighbour = (hour + shift) % 24
        found += [(neighbour + 24 * weekend, near), (neighbour + 24 * (1 - weekend), near * OTHER_DAY_TYPE)]
    return found


#: For each slot, the slots whose estimate its silences count in, and how much: the pooling turned around.
_POOLED_INTO: list[list[tuple[int, float]]] = [[] for _ in range(SLOTS)]
for _target in range(SLOTS):
    for _source, _share in _pooling(_target):
        _POOLED_INTO[_source].append((_target, _share))


def bin_of(duration_ms: float) -> int:
    """The bin a silence of ``duration_ms`` falls in.

    >>> bin_of(10 * 60_000), bin_of(15 * 60_000), bin_of(8 * HOUR_MS), bin_of(1000 * HOUR_MS)
    (0, 1, 21, 31)
    """
    if duration_ms < FIRST_EDGE_MS:
        return 0
    return min(BINS - 1, 1 + int(math.floor(BINS_PER_OCTAVE * math.log2(duration_ms / FIRST_EDGE_MS))))


def bin_end(index: int) -> float:
    """The upper edge of bin ``index`` (ms): every silence counted there was shorter."""
    return FIRST_EDGE_MS * 2 ** (index / BINS_PER_OCTAVE)


class Routine:
    """The learned silences of one home (one sensor and its notion of use)."""

    def __init__(self, half_life_ms: int, quantile: float):
        self.half_life_ms = half_life_ms
        self.quantile = quantile
        self.counts: list[list[float]] = [[0.0] * BINS for _ in range(SLOTS)]
        #: Each slot's counts pooled with its neighbours', kept up to date as silences are learned: judging a
        #: silence, once per silence, must not cost a pass over 10 rows.
        self._pooled: list[list[float]] = [[0.0] * BINS for _ in range(SLOTS)]
        self.reference: int | None = None     # the time a weight of 1 stands for

    # --- learning ---------------------------------------------------------------------------------------
    def _weight(self, now: int) -> float:
        if self.reference is None:
            self.reference = now
        exponent = (now - self.reference) / self.half_life_ms
        if exponent > _RESCALE_EXPONENT:
            scale = 2.0 ** -exponent
            self.counts = [[count * scale for count in row] for row in self.counts]
            self._pooled = [[count * scale for count in row] for row in self._pooled]
            self.reference, exponent = now, 0.0
        return 2.0 ** exponent

    def learn(self, slot: int, duration_ms: int, now: int) -> None:
        """One finished silence of ``duration_ms`` that began in ``slot``, learned at ``now``.

        Rows are replaced, never changed in place, so a :meth:`copy` keeps what it was given.
        """
        index, weight = bin_of(duration_ms), self._weight(now)
        row = self.counts[slot] = list(self.counts[slot])
        row[index] += weight
        for target, share in _POOLED_INTO[slot]:
            row = self._pooled[target] = list(self._pooled[target])
            row[index] += share * weight

    def copy(self) -> Routine:
        """The routine learned so far, apart from this one from now on; costs 96 references, not 3,072 numbers.

        How ``linli evaluate`` follows a home after the water stops without copying what it learned each time.
        """
        twin = Routine(self.half_life_ms, self.quantile)
        twin.counts, twin._pooled, twin.reference = list(self.counts), list(self._pooled), self.reference
        return twin

    # --- judging ----------------------------------------------------------------------------------------
    def pooled(self, slot: int) -> list[float]:
        """The slot's counts with its neighbours' and the other day type's, weighted as the module says."""
        return list(self._pooled[slot])

    def _scale(self, now: int) -> float:
        """What a weight of 1 is worth at ``now`` in silences: counts divided by it are ages-weighted silences."""
        if self.reference is None:
            return 1.0
        return 2.0 ** ((now - self.reference) / self.half_life_ms)

    def known(self, slot: int, now: int) -> float:
        """How many silences (after ageing) the estimate for ``slot`` rests on."""
        return sum(self.pooled(slot)) / self._scale(now)

    def usual_longest(self, slot: int, now: int) -> float | None:
        """The duration (ms) ``quantile`` of this home's silences beginning in ``slot`` stay under; None if unknown."""
        return self.share_quantile(self.pooled(slot), now, self.quantile)

    def share_quantile(self, pooled: list[float], now: int, share: float) -> float | None:
        total = sum(pooled)
        if total / self._scale(now) < ENOUGH_SILENCES:
            return None
        wanted, running = share * total, 0.0
        for index, count in enumerate(pooled):
            if running + count >= wanted:
                # Within the bin, on its logarithmic scale, as far as the share still wanted reaches into it.
                start = bin_end(index - 1) if index else bin_end(0) / 2
                return start * (bin_end(index) / start) ** ((wanted - running) / count)
            running += count
        return bin_end(BINS - 1)

    def longer_share(self, slot: int, duration_ms: float) -> float | None:
        """The share of learned silences beginning in ``slot`` (pooled) that lasted ``duration_ms`` or longer."""
        pooled = self.pooled(slot)
        total = sum(pooled)
        if not total:
            return None
        return sum(count for index, count in enumerate(pooled) if bin_end(index) > duration_ms) / total

    # --- persistence ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-able and small: only the bins that hold something, weights to six significant digits."""
        rows = {str(slot): {str(index): float(f"{count:.6g}") for index, count in enumerate(row) if count > 0}
                for slot, row in enumerate(self.counts) if any(row)}
        return {"reference": self.reference, "slots": rows}

    def load(self, state: dict[str, Any]) -> None:
        counts = [[0.0] * BINS for _ in range(SLOTS)]
        for slot, row in state["slots"].items():
            for index, count in row.items():
                slot_number, bin_number = int(slot), int(index)
                if not (0 <= slot_number < SLOTS and 0 <= bin_number < BINS) or not math.isfinite(count) or count < 0:
                    raise ValueError(f"learned silences out of range: slot {slot}, bin {index}, {count!r}")
                counts[slot_number][bin_number] = float(count)
        reference = state["reference"]
        if reference is not None and not isinstance(reference, int):
            raise ValueError(f"learned silences: reference time {reference!r} is not an integer")
        pooled = [[0.0] * BINS for _ in range(SLOTS)]
        for target in range(SLOTS):
            for source, share in _pooling(target):
                pooled[target] = [total + share * count for total, count in zip(pooled[target], counts[source],
                                                                                strict=True)]
        self.counts, self._pooled, self.reference = counts, pooled, reference
