"""A set of seqs kept as sorted, merged ranges: a gateway's millions of contiguous seqs cost a few numbers.

Records mostly arrive in seq order, so adding one usually extends the last range.

>>> seen = SeqRanges()
>>> for seq in (1, 2, 3, 7, 5, 6):
...     _ = seen.add(seq, seq)
>>> seen.ranges(), len(seen)
([(1, 3), (5, 7)], 6)
>>> seen.add(2, 2)        # already there
False
>>> seen.missing(1, 9)
[(4, 4), (8, 9)]
"""

from __future__ import annotations

import bisect


class SeqRanges:
    """Disjoint, non-adjacent closed ranges ``[lo, hi]`` of integers, in order."""

    def __init__(self) -> None:
        self._los: list[int] = []
        self._his: list[int] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __contains__(self, seq: int) -> bool:
        i = bisect.bisect_right(self._los, seq) - 1
        return i >= 0 and self._his[i] >= seq

    def lowest(self) -> int | None:
        return self._los[0] if self._los else None

    def highest(self) -> int | None:
        return self._his[-1] if self._his else None

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._los, self._his, strict=True))

    def add(self, lo: int, hi: int) -> bool:
        """Add ``[lo, hi]``; True when at least one of its seqs was not there yet."""
        if hi < lo:
            raise ValueError(f"empty range [{lo}, {hi}]")
        # Ranges that overlap or touch [lo, hi] are merged with it.
        first = bisect.bisect_left(self._his, lo - 1)
        last = bisect.bisect_right(self._los, hi + 1)
        covered = sum(max(0, min(hi, self._his[i]) - max(lo, self._los[i]) + 1) for i in range(first, last))
        if covered == hi - lo + 1:
            return False
        if first < last:
            lo, hi = min(lo, self._los[first]), max(hi, self._his[last - 1])
            self._count -= sum(self._his[i] - self._los[i] + 1 for i in range(first, last))
        self._los[first:last] = [lo]
        self._his[first:last] = [hi]
        self._count += hi - lo + 1
        return True

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The ranges of ``[lo, hi]`` not in the set."""
        gaps: list[tuple[int, int]] = []
        at = lo
        start = max(0, bisect.bisect_right(self._his, lo - 1))
        for i in range(start, len(self._los)):
            if self._los[i] > hi:
                break
            if self._los[i] > at:
                gaps.append((at, self._los[i] - 1))
            at = max(at, self._his[i] + 1)
        if at <= hi:
            gaps.append((at, hi))
        return gaps
