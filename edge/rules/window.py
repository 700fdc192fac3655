"""Local calendar arithmetic in the gateway's time zone: daily windows, days, bins.

Everything takes and returns epoch milliseconds; the zone only decides where a
local day or a window like ``22:00-06:00`` begins and ends.

>>> import zoneinfo
>>> cal = Calendar(zoneinfo.ZoneInfo("Asia/Shanghai"))
>>> night = parse_window("22:00-06:00")
>>> cal.in_window(night, 1767628800000)     # 2026-01-06 00:00 +08:00
True
>>> cal.next_window_change(night, 1767628800000)   # 06:00 the same morning
1767650400000
"""

from __future__ import annotations

import datetime
import re
from zoneinfo import ZoneInfo

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
DAY_MINUTES = 24 * 60
_HOUR_MS = 3_600_000
#: Hours whose UTC offset is remembered; a replay moves forward, so the cache is simply emptied when full.
_CACHED_HOURS = 4096


def parse_window(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` as minutes of the day; raises ``ValueError`` for anything else.

    >>> parse_window("22:00-06:30")
    (1320, 390)
    """
    match = _WINDOW.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f'expected a daily window like "22:00-06:00", got {text!r}')
    start = int(match[1]) * 60 + int(match[2])
    end = int(match[3]) * 60 + int(match[4])
    if start == end:
        raise ValueError(f"a window must not start and end at the same time, got {text!r}")
    return start, end


class Calendar:
    """Local time of one zone, with the conversions the rules need."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self._hour_offsets: dict[int, int] = {}  # UTC hour (ts // 1 h) -> the offset throughout it, in ms

    def local(self, ts: int) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(ts / 1000, self.zone)

    def _at(self, day: datetime.date, minute: int) -> int:
        moment = datetime.datetime.combine(day, datetime.time(minute // 60, minute % 60), self.zone)
        return int(moment.timestamp() * 1000)

    def day_end(self, ts: int) -> int:
        """The local midnight that ends the day holding ``ts``."""
        return self._at(self.local(ts).date() + datetime.timedelta(days=1), 0)

    def offset_ms(self, ts: int) -> int:
        """The zone's UTC offset at ``ts``.

        Asked for every reading a bin rule judges, so remembered per UTC hour: an hour
        whose first and last millisecond have the same offset has it throughout, since
        no zone changes its offset twice within an hour. An hour with a change in it
        (DST begins or ends) is not remembered, and each time in it is looked up.
        """
        hour = ts // _HOUR_MS
        offset = self._hour_offsets.get(hour)
        if offset is None:
            first, last = self._zone_offset_ms(hour * _HOUR_MS), self._zone_offset_ms((hour + 1) * _HOUR_MS - 1)
            if first != last:
                return self._zone_offset_ms(ts)
            if len(self._hour_offsets) >= _CACHED_HOURS:
                self._hour_offsets.clear()
            self._hour_offsets[hour] = offset = first
        return offset

    def _zone_offset_ms(self, ts: int) -> int:
        offset = self.local(ts).utcoffset()
        return int(offset.total_seconds() * 1000) if offset else 0

    def in_window(self, window: tuple[int, int], ts: int) -> bool:
        """Whether local time at ``ts`` is inside ``window`` (start inclusive, end exclusive)."""
        moment = self.local(ts)
        minute = moment.hour * 60 + moment.minute
        start, end = window
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end

    def next_window_change(self, window: tuple[int, int], ts: int) -> int:
        """The first window start or end strictly after ``ts``."""
        day = self.local(ts).date() - datetime.timedelta(days=1)
        found = [self._at(day + datetime.timedelta(days=d), minute)
                 for d in range(3) for minute in window]
        return min(t for t in found if t > ts)
