"""``routine``: a home silent for longer than this home, at this time of day, almost ever is.

A *use* is a rise of the running total by ``min_increase`` (1 L by default, so a
10 L-per-pulse meter's every pulse is one); a *silence* runs from one use to the
next. Each finished silence teaches the home's :class:`~edge.rules.routine_model.Routine`
how long silences beginning at that hour (weekday or weekend) last. A silence
may then last ``stretch`` times the ``quantile`` of those, plus ``slack``, before
the alarm is raised — never less than ``min_silence`` nor more than
``max_silence``. For the ``warmup`` after the first reading, and at hours of the
day too rarely seen yet, the fixed rule applies instead: ``warmup_window`` of
silence.

The alarm is one per silence: raised once, cleared at the next use.
Readings further apart than ``max_gap`` are a silent meter (``stale``'s
business, not a fall): nothing is raised while the meter says nothing; the first
reading after the gap that shows no use confirms the silence, and raises if it
has lasted too long. No silence with such a gap in it is learned. A silence of a day or
more is an absence, not a routine: it is never learned either. A counter
going down is a reset or a new meter: the drop is no use.
"""

from __future__ import annotations

from typing import Any

from drivers.options import Option
from edge.i18n import _
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector, Signal, at_least, seconds_ms
from edge.rules.kind import WEEK, Kind, Problem, Sensitivity, positive
from edge.rules.routine_model import Routine
from edge.rules.text import duration

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: 1970-01-01 was a Thursday: Monday is 0, as datetime.weekday() counts.
_EPOCH_WEEKDAY = 3
#: A silence counts for the day type (weekday, weekend) of the moment this long after it began: Friday's night
#: ends on Saturday morning and is a weekend night.
_DAY_TYPE_SHIFT_MS = 6 * 3_600_000


class RoutineDetector(Detector):
    """Out when the silence outlasts what this home's routine allows for its hour; back at the next use."""

    fields = ("since", "ref", "last_ts", "last", "first_ts", "clean", "allowed", "usual", "waiting", "out")
    learns = True

    def __init__(self, rule, calendar):
        super().__init__(rule, calendar)
        p = self.params
        self.use = p["min_increase"]
        self.gap = seconds_ms(p["max_gap"])
        self.floor, self.cap = seconds_ms(p["min_silence"]), seconds_ms(p["max_silence"])
        self.warmup, self.fixed = seconds_ms(p["warmup"]), seconds_ms(p["warmup_window"])
        self.routine = Routine(seconds_ms(p["half_life"]), p["quantile"])
        self.since: int | None = None       # the last use: when this silence began
        self.ref: float | None = None       # the total then (shifted down across resets)
        self.last_ts: int | None = None
        self.last: float | None = None
        self.first_ts: int | None = None    # the first reading ever: the warm-up counts from it
        self.clean = True                   # no gap in the readings since the silence began
        self.allowed: int | None = None     # how long this silence may last (ms), once judged
        self.usual: int | None = None       # ... and how long such silences usually last at most (None: warm-up)
        self.waiting = False                # allowed ran out during a gap: the next reading decides
        self.out = False

    # --- readings -------------------------------------------------------------------------------------
    def reading(self, ts: int, value: Any, usable: bool) -> Signal | None:
        value = float(value)
        if self.since is None:
            self.last_ts, self.last = ts, value
            if self.first_ts is None:   # else the warm-up began before (load_learned)
                self.first_ts = ts
            self._silence_from(ts, value)
            return None
        gap = ts - self.last_ts > self.gap
        if value < self.last:
            self.ref = value - (self.last - self.ref)
        self.last, self.last_ts = value, ts
        if at_least(value - self.ref, self.use, value):
            if self.clean and not gap and ts - self.since < DAY_MS:
                self.routine.learn(self.slot(self.since), ts - self.since, ts)
            was_out = self.out
            self._silence_from(ts, value)
            return Signal(False, True, 0.0, None) if was_out else None
        if gap:
            self.clean = False      # the silence goes on (the total did not rise), but what it was is not sure
        if self.out:
            return None
        if self.waiting or (self.allowed is not None and ts >= self.since + self.allowed):
            return self._raise(ts)
        return None

    def _silence_from(self, ts: int, ref: float, clean: bool = True) -> None:
        self.since, self.ref, self.clean = ts, ref, clean
        self.allowed = self.usual = None
        self.waiting = self.out = False

    def _raise(self, now: int) -> Signal:
        self.out, self.waiting = True, False
        return Signal(True, False, self._hours(now - self.since), self._hours(self.allowed), words=self.words())

    # --- timers ---------------------------------------------------------------------------------------
    def due(self) -> int | None:
        if self.out or self.waiting or self.since is None:
            return None
        # Nothing is judged before min_silence: most silences end sooner, and never cost a look at the model.
        return self.since + (self.floor if self.allowed is None else self.allowed)

    def fire(self, now: int) -> Signal | None:
        if self.allowed is None:
            self.allowed, self.usual = self._judge()
            if self.since + self.allowed > now:
                return None
        if now - self.last_ts > self.gap:
            self.waiting = True     # no reading lately: a silent meter is not a silent home, yet
            return None
        return self._raise(now)

    def resume(self, now: int) -> Signal | None:
        # Back from away: the silence counts from the return, and one spanning the absence is not the routine.
        if self.since is None:
            return None
        was_out = self.out
        self._silence_from(now, self.ref, clean=False)
        return Signal(False, True, 0.0, None) if was_out else None

    # --- what the routine allows ------------------------------------------------------------------------
    def slot(self, ts: int) -> int:
        """The routine's slot of a silence beginning at ``ts``: its local hour, plus 24 on a weekend."""
        # Asked at every use of water: the calendar's cached offset, not a datetime, finds the local hour and day.
        hour = (ts + self.calendar.offset_ms(ts)) // HOUR_MS % 24
        shifted = ts + _DAY_TYPE_SHIFT_MS
        weekday = ((shifted + self.calendar.offset_ms(shifted)) // DAY_MS + _EPOCH_WEEKDAY) % 7
        return hour + (24 if weekday >= 5 else 0)

    def warming_up(self, now: int) -> bool:
        return self.first_ts is None or now - self.first_ts < self.warmup

    def warmup_until(self, now: int) -> int | None:
        """When the fixed rule gives way to the learned routine; None once it has."""
        if not self.warming_up(now):
            return None
        return (now if self.first_ts is None else self.first_ts) + self.warmup

    def _judge(self) -> tuple[int, int | None]:
        """``(allowed, usual)`` for the silence that began at ``since``; usual is None where the fixed rule holds."""
        usual = None if self.warming_up(self.since) else self.routine.usual_longest(self.slot(self.since), self.since)
        return self._allowed(usual), None if usual is None else int(usual)

    def _allowed(self, usual: float | None) -> int:
        """How long a silence may last when this home's silences beginning then usually last at most ``usual``."""
        if usual is None:
            return max(self.fixed, self.floor)
        allowed = usual * self.params["stretch"] + seconds_ms(self.params["slack"])
        return int(min(max(allowed, self.floor), self.cap))

    # --- linli explain ----------------------------------------------------------------------------------
    def explain(self, now: int) -> dict[str, Any]:
        """What was learned, per hour of the day and day type, and where the current silence stands."""
        learning = self.warming_up(now)
        hours = []
        for hour in range(24):
            row: dict[str, Any] = {"hour": hour}
            for day_type, name in ((0, "weekday"), (1, "weekend")):
                slot = hour + 24 * day_type
                pooled = self.routine.pooled(slot)
                usual = None if learning else self.routine.usual_longest(slot, now)
                allowed = self._allowed(usual)
                median = self.routine.share_quantile(pooled, now, 0.5)
                row[name] = {"silences": round(self.routine.known(slot, now), 1),
                             "median_h": None if median is None else self._hours(median),
                             "usual_longest_h": None if usual is None else self._hours(usual),
                             "alarm_after_h": self._hours(allowed),
                             "longer_share": _rounded(self.routine.longer_share(slot, allowed))}
            hours.append(row)
        silence = None
        if self.since is not None:
            allowed, usual = (self.allowed, self.usual) if self.allowed is not None else self._judge()
            silence = {"since": self.since, "hours": self._hours(max(0, now - self.since)),
                       "usual_by": None if usual is None else self.since + usual,
                       "alarm_at": self.since + allowed, "raised": self.out, "waiting_for_reading": self.waiting}
        return {"warmup_until": self.warmup_until(now), "silence": silence, "hours": hours}

    def words(self) -> tuple[str, str]:
        """The raised message: since when the home is silent and by when it usually is not."""
        s = self.rule.sensor
        since = self._clock(self.since)
        if self.usual is None:
            window = duration(self.allowed / 1000)
            return (f"{s}: no water since {since}, {window} without use (still learning this home's routine)",
                    f"{s}：自 {since} 起没有用水，已 {window}（仍在学习此户的作息）")
        by = self._clock(self.since + self.usual)
        return (f"{s}: no water since {since}; this home almost always uses water by {by}",
                f"{s}：自 {since} 起没有用水；此户几乎总在 {by} 之前用水")

    def _clock(self, ts: int) -> str:
        # A time of day says it all within a day; an older one needs its date.
        recent = (self.last_ts or ts) - ts < DAY_MS
        return self.calendar.local(ts).strftime("%H:%M" if recent else "%m-%d %H:%M")

    @staticmethod
    def _hours(ms: int) -> float:
        return round(ms / 3_600_000, 2)

    # --- what is learned is kept apart from the rest: it changes rarely and is written rarely -----------
    def learned(self) -> dict[str, Any]:
        # The warm-up's start goes with what was learned: a rule whose thresholds changed starts its detector
        # afresh (RuleEngine.restore) but keeps its learning, and must not warm up again.
        return {**self.routine.state(), "first_ts": self.first_ts}

    def load_learned(self, state: dict[str, Any]) -> None:
        first = state.get("first_ts")
        if first is not None and not isinstance(first, int):
            raise ValueError(f"learned silences: first reading time {first!r} is not an integer")
        self.routine.load(state)
        if first is not None and (self.first_ts is None or first < self.first_ts):
            self.first_ts = first

    def learn_as(self, other: RoutineDetector) -> None:
        """Go on from what ``other`` (the same rule in another engine) has learned so far, without copying it."""
        self.routine, self.first_ts = other.routine.copy(), other.first_ts

    def learning_key(self) -> str:
        """What the learned routine depends on: the threshold keys may change without relearning."""
        return f"{self.rule.quantity}|min_increase={self.use!r}"


def raised_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    # The detector words its raised signal itself (RoutineDetector.words, with the times in it); an alarm restored
    # after a restart and raised later, when its active window opens, has only the signal's value and limit.
    s = rule.sensor
    return (f"{s}: no water for {value} h, longer than this home's routine allows ({limit} h)",
            f"{s}：已 {value} 小时没有用水，超过此户作息允许的 {limit} 小时")


def _check(params: dict[str, Any], raw: dict[str, Any], problem: Problem, path: str) -> None:
    floor, cap = params.get("min_silence"), params.get("max_silence")
    if floor is not None and cap is not None and floor > cap:
        problem("min_silence", _("must not be above {other} ({limit}), got {value}").format(
            other=f"{path}.max_silence", limit=duration(cap), value=duration(floor)))


def _quantile(value: float) -> str | None:
    return None if 0.5 <= value < 1 else _("must be at least 0.5 and below 1, got {value}").format(value=f"{value:g}")


KIND = Kind(
    name="routine",
    help="a home silent for longer than this home, at this time of day, almost ever is (learned)",
    options={
        "min_increase": Option("float", default=0.001, check=positive,
                               help="more than 0: the rise of the total that is a use of water (0.001 m³ is 1 L)"),
        "quantile": Option("float", default=0.995, check=_quantile,
                           help="the share of this home's silences beginning at that hour the routine calls usual"),
        "stretch": Option("float", default=1.15, min=1, max=10,
                          help="a silence may last this many times the usual longest one before the alarm"),
        "slack": Option("duration", default="1h", max=86400, help="... plus this long"),
        "min_silence": Option("duration", default="3h", min=60, max=WEEK,
                              help="never raise before a silence lasted this long"),
        "max_silence": Option("duration", default="20h", min=60, max=WEEK,
                              help="always raise once a silence lasted this long, whatever the routine"),
        "warmup": Option("duration", default="14d", max=365 * 86400.0,
                         help="after the first reading, the fixed rule holds this long while the routine is learned"),
        "warmup_window": Option("duration", default="12h", min=60, max=WEEK,
                                help="the fixed rule: raise after this long without use (also at hours too "
                                     "rarely seen yet)"),
        "max_gap": Option("duration", default="2h", min=1, max=WEEK,
                          help="readings further apart are a silent meter (the stale rule's business): nothing "
                               "is raised until a reading confirms the silence, and it is not learned"),
        "half_life": Option("duration", default="30d", min=86400, max=3650 * 86400.0,
                            help="a silence learned this long ago counts half as much: longer silences are "
                                 "followed at once, shorter ones only as the old long ones fade (months)"),
    },
    detector=RoutineDetector,
    raised_message=raised_message,
    check=_check,
    # A larger stretch wakes fewer people for a long nap and finds a fall later.
    sensitivity=Sensitivity("stretch", (1.0, 1.15, 1.3, 1.5, 1.75)),
)


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)
