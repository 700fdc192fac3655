"""``linli evaluate``: how many false alarms a config's rules give real homes, and how fast they catch an incident.

The trace is read as :mod:`edge.trace` reads it for ``linli replay``, and each rule
runs in the agent's own :class:`~edge.rules.RuleEngine` with timers fired as
:func:`edge.replay.replay` fires them. What is measured:

**Homes.** A home is a sensor and quantity of the trace that a rule watches (a
flat's water meter ``volume``); a trace may interleave many. With ``each_sensor``
every rule is also applied to every other sensor of the trace reporting its
quantity, as if the config had one copy of the rule per sensor (none is made where
the sensor already has a rule of that id). Each home has its own engine holding
its rules only, and its own clock: the home's own rows, so a home's figures are
those of replaying its rows alone. A home is observed from its first reading to its
last.

**Use and silence**, for classifying only, whatever the rules' own settings: a
*use* is a reading where the counter has risen by at least ``use`` (default 0.001,
in the quantity's unit: 1 L of a meter in m³, the smallest step most meters count) since the last use. A counter going
down is a reset or a replaced meter: the drop is no use and the base moves with it,
as the ``inactivity`` kind does. A *silence* runs from one use (or the home's first
reading) to the next use.

**False alarms.** The trace is replayed as it is: nothing happened in a real
trace, so every ``raised`` transition is a false alarm. It is a *nuisance* when the
silence it was raised in ended within 24 h of its start (the person was there and
used water), a *welfare check* when that silence lasted 24 h or more, or had not
ended when the home's trace did. Rates are per home per 30 days: count × 30 / the
sum of the homes' observed days.

**Incidents.** ``incidents`` moments per home; at a moment *t* the water stops
for good: from *t* on, the meter keeps reporting the value of its last reading at
or before *t*, at the home's own later timestamps. When the replay reaches *t*, the
home's engine is forked (:meth:`~edge.rules.RuleEngine.fork`: its state copied, what
its rules learned shared) and the fork is fed the frozen
readings as the home's rows come, until each of its rules has raised or ``horizon``
(default 7 days) has passed. The delay is the first raise at or after *t*, minus
*t*; a rule whose alarm is already raised at *t* detects it at delay 0; one that
has not raised within the horizon is infinitely late.

The moments are uniform over the home's observed span without its last horizon,
though that span is known only at the end of a trace that may come through a pipe.
Each of the home's ``incidents`` slots therefore follows one moment of a uniform
sample of a growing interval, which moves to the interval's new end now and then:
slot *i* draws from ``random.Random(f"{seed}/{sensor}/{quantity}/{i}")``, with
*u* = 1 − ``random()`` each time, the offsets after the home's first reading
d₀ = 60 000 ms × u₀, d₁ = 60 000 ms / u₁, dₖ₊₁ = dₖ / uₖ₊₁; its incident is at the
last offset at or before span − horizon, in whole milliseconds. (A moment chosen
when the interval is [s, x] stays chosen at [s, y] with chance (x − s)/(y − s), so
the last one is uniform over the whole.) Every offset starts a fork when the replay
reaches it, and a fork is dropped as soon as a later offset of its slot lies a
horizon before the rows; there are about ln(span / 1 min) offsets per slot, and the
same seed gives the same moments for a home alone or among others. A home observed
for less than its horizon and a minute may get fewer incidents.

**Sensitivity.** A kind that declares a knob (:func:`sensitivity`) has each of its
values evaluated as an extra variant of the rule, the rule with that option
replaced, in the same engine and the same pass (the value the rule itself has is
the rule's own figures); ``curve=False`` leaves the variants out.

Memory: the state of each home, its active forks, and one delay per incident and
rule; nothing is kept per row, so a trace of any length (or a pipe) is fine.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Iterator
from typing import Any

from drivers.options import validate_options
from edge.config import Config
from edge.replay import fire_timers, replay
from edge.rules import RuleConfig, RuleEngine  # the agent's own engine: there is no second implementation
from edge.rules.detector import at_least
from edge.rules.kinds import kind

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: A silence shorter than this ended with the person's own water use: an alarm raised in it was a nuisance.
WELFARE_SILENCE_MS = DAY_MS
#: The interval incident moments are first drawn in, after a home's first reading (see the module docstring).
FIRST_DRAW_MS = 60_000

def sensitivity(kind_name: str) -> tuple[str, list[tuple[str, Any]]] | None:
    """The option the kind declares as its sensitivity, and each value tried as ``(as written, as parsed)``.

    >>> option, values = sensitivity("inactivity")
    >>> option, values[0], sensitivity("threshold")
    ('window', ('6h', 21600.0), None)
    """
    declared = kind(kind_name).sensitivity
    if declared is None:
        return None
    spec = {declared.option: kind(kind_name).options[declared.option]}
    parsed = [validate_options(spec, {declared.option: value})[0][declared.option] for value in declared.values]
    return declared.option, [(str(value), number) for value, number in zip(declared.values, parsed, strict=True)]


def duration_label(seconds: float) -> str:
    """``21600.0`` as ``"6h"``: the largest whole unit, days only from two of them on.

    >>> duration_label(21600.0), duration_label(86400.0), duration_label(90.0), duration_label(7 * 86400.0)
    ('6h', '24h', '90s', '7d')
    """
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds > 0 and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``linli evaluate``'s options set."""

    use: float = 0.001
    incidents: int = 0
    seed: int = 0
    horizon_ms: int = 7 * DAY_MS
    each_sensor: bool = False
    #: Each value of a kind's sensitivity knob is one more rule to run: a street's figures alone go faster.
    curve: bool = True


@dataclasses.dataclass(eq=False)
class Measure:
    """The tally of one rule as evaluated, or of one of its sensitivity variants (``value`` is the option's,
    ``label`` the value as a config writes it)."""

    value: Any = None
    label: str = ""
    nuisance: int = 0
    welfare: int = 0
    #: One delay (ms) per incident; ``math.inf`` when not detected within the horizon.
    delays: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class RuleTally:
    """A rule of the config: its homes, their observed time, its own measure and its variants'."""

    rule: RuleConfig
    own: Measure
    variants: list[Measure]
    option: str | None
    homes: int = 0
    observed_ms: int = 0


class Evaluation:
    """Readings in (:meth:`feed`, time-ordered), the tallies out once :meth:`finish` has run."""

    def __init__(self, config: Config, settings: Settings):
        self.settings = settings
        self.timezone = config.gateway.timezone
        self.tallies = []
        for rule in config.rules:
            knob = sensitivity(rule.kind) if settings.curve else None
            option, values = knob if knob else (None, ())
            # The point of the curve the rule itself stands on is the rule's own measure: run once, not twice.
            own = next((Measure(value, label) for label, value in values if value == rule.params.get(option)),
                       Measure())
            variants = [own if value == own.value else Measure(value, label) for label, value in values]
            self.tallies.append(RuleTally(rule, own, variants, option))
        self.homes: dict[tuple[str, str], _Home | None] = {}
        self.rows = 0

    def feed(self, reading: dict[str, Any]) -> None:
        self.rows += 1
        key = (reading["sensor"], reading["quantity"])
        if key not in self.homes:
            self.homes[key] = self._home(*key)
        home = self.homes[key]
        if home is not None:
            home.feed(reading)

    def finish(self) -> None:
        for home in self.homes.values():
            if home is not None:
                home.finish()

    @property
    def home_count(self) -> int:
        return sum(home is not None for home in self.homes.values())

    @property
    def observed_ms(self) -> int:
        return sum(home.observed_ms for home in self.homes.values() if home is not None)

    def _home(self, sensor: str, quantity: str) -> _Home | None:
        own_ids = {tally.rule.id for tally in self.tallies if (tally.rule.sensor, tally.rule.quantity)
                   == (sensor, quantity)}
        copied: set[str] = set()
        chosen = []
        for tally in self.tallies:
            rule = tally.rule
            if rule.quantity != quantity:
                continue
            if rule.sensor != sensor:
                if not self.settings.each_sensor or rule.id in own_ids or rule.id in copied:
                    continue
                copied.add(rule.id)
                rule = dataclasses.replace(rule, sensor=sensor)
            chosen.append((tally, rule))
        if not chosen:
            return None
        units: list[tuple[RuleConfig, Measure]] = []
        for tally, rule in chosen:
            tally.homes += 1
            units.append((rule, tally.own))
            for measure in tally.variants:
                if measure is tally.own:
                    continue
                variant = dataclasses.replace(
                    rule, id=f"{rule.id}@{tally.option}={measure.label}",
                    params={**rule.params, tally.option: measure.value})
                units.append((variant, measure))
        slots = [random.Random(f"{self.settings.seed}/{sensor}/{quantity}/{slot}")
                 for slot in range(self.settings.incidents)]
        return _Home(units, [tally for tally, _rule in chosen], slots, self.settings, self.timezone)


class _Home:
    """One home's engine, its use and silence, its pending false alarms and its incident slots."""

    def __init__(self, units: list[tuple[RuleConfig, Measure]], tallies: list[RuleTally],
                 slots: list[random.Random], settings: Settings, timezone: str):
        self.rules = [rule for rule, _measure in units]
        self.measure_of = {rule.alarm: measure for rule, measure in units}
        self.tallies = tallies
        self.settings = settings
        self.timezone = timezone
        self.engine = RuleEngine(self.rules, timezone=timezone)
        self.first: int | None = None
        self.last: int | None = None
        self.counter = _Counter(settings.use)
        self.silence_start: int | None = None
        self.pending: dict[Measure, int] = {}   # alarms raised in the silence under way, not yet classified
        self._random = slots
        self.slots: list[_Slot] = []

    @property
    def observed_ms(self) -> int:
        return 0 if self.first is None else self.last - self.first

    def feed(self, reading: dict[str, Any]) -> None:
        ts = reading["ts"]
        if self.first is None:
            self.first = self.silence_start = ts
            self.slots = [_Slot(rng, ts) for rng in self._random]
        self.last = ts
        for moment, slot in sorted(_moments_before(self.slots, ts), key=lambda pair: pair[0]):
            self._raised(fire_timers(self.engine, moment))
            fork = self._fork(moment)
            slot.draws.append(_Draw(moment, fork, fork.delays))
        self._raised(fire_timers(self.engine, ts))
        for slot in self.slots:
            slot.forget_before(ts, self.settings.horizon_ms)
            for draw in slot.draws:
                if draw.fork is not None and draw.fork.feed(reading):
                    draw.fork = None
        if self.counter.used(ts, reading):
            self._silence_ended(ts)
        self._raised(self.engine.evaluate(reading))

    def finish(self) -> None:
        self._silence_ended(None)
        for tally in self.tallies:
            tally.observed_ms += self.observed_ms
        if self.first is None:
            return
        latest = self.last - self.settings.horizon_ms
        for slot in self.slots:
            chosen = [draw for draw in slot.draws if draw.moment <= latest]
            if not chosen:
                continue
            delays = chosen[-1].delays
            for measure in self.measure_of.values():
                measure.delays.append(delays.get(measure, math.inf))

    def _raised(self, transitions: Iterable[dict[str, Any]]) -> None:
        for transition in transitions:
            if transition["state"] == "raised":
                measure = self.measure_of[transition["alarm"]]
                self.pending[measure] = self.pending.get(measure, 0) + 1

    def _silence_ended(self, ts: int | None) -> None:
        """Classify the alarms of the silence ending at ``ts`` (``None``: at the end of the home's trace)."""
        welfare = ts is None or ts - self.silence_start >= WELFARE_SILENCE_MS
        for measure, count in self.pending.items():
            if welfare:
                measure.welfare += count
            else:
                measure.nuisance += count
        self.pending = {}
        self.silence_start = ts

    def _fork(self, moment: int) -> _Fork:
        engine = self.engine.fork()    # a routine rule goes on with what it learned, shared, not copied
        already = {self.measure_of[alarm["alarm"]]: 0.0 for alarm in self.engine.raised()
                   if alarm["alarm"] in self.measure_of}
        return _Fork(engine, moment, moment + self.settings.horizon_ms, self.counter.last_value,
                     self.measure_of, already)


class _Counter:
    """Uses of a counter: a rise of at least ``use`` since the last one; a drop re-bases (a reset or new meter)."""

    def __init__(self, use: float):
        self.use = use
        self.base: float | None = None
        self.last_value: float | None = None  # the last usable value: what a stopped meter goes on reporting

    def used(self, ts: int, reading: dict[str, Any]) -> bool:
        value = _usable(reading)
        if value is None:
            return False
        if self.base is None:
            self.base = self.last_value = value
            return False
        if value < self.last_value:
            self.base = value - (self.last_value - self.base)
        self.last_value = value
        if at_least(value - self.base, self.use, value):
            self.base = value
            return True
        return False


def _usable(reading: dict[str, Any]) -> float | None:
    value = reading.get("value")
    if reading.get("quality") == "bad" or value is None:
        return None
    return float(value)


class _Fork:
    """A home's engine from an incident moment on, fed the frozen readings until all raised or the horizon."""

    def __init__(self, engine: RuleEngine, moment: int, deadline: int, frozen: float | None,
                 measure_of: dict[str, Measure], delays: dict[Measure, float]):
        self.engine = engine
        self.moment = moment
        self.deadline = deadline
        self.frozen = frozen
        self.measure_of = measure_of
        self.delays = delays

    def feed(self, reading: dict[str, Any]) -> bool:
        """The home's next row, as the stopped meter reports it; True once the fork has nothing left to find."""
        if reading["ts"] > self.deadline:
            self._raised(fire_timers(self.engine, self.deadline))
            return True
        self._raised(replay(self.engine, [self._frozen(reading)]))
        return len(self.delays) == len(self.measure_of)

    def _frozen(self, reading: dict[str, Any]) -> dict[str, Any]:
        if reading.get("quality") == "bad":
            return reading   # the meter failed to read: still no value
        if self.frozen is None:
            return {**reading, "value": None, "quality": "bad"}
        return {**reading, "value": self.frozen}

    def _raised(self, transitions: Iterable[dict[str, Any]]) -> None:
        for transition in transitions:
            measure = self.measure_of.get(transition["alarm"])
            if transition["state"] == "raised" and measure is not None and measure not in self.delays:
                self.delays[measure] = float(transition["ts"] - self.moment)


@dataclasses.dataclass(eq=False)
class _Draw:
    """One moment a slot moved to, and its fork's findings (kept once the fork has finished and is dropped)."""

    moment: int
    fork: _Fork | None
    delays: dict[Measure, float]


class _Slot:
    """One incident of a home: the moments it moves to, drawn as the module docstring says."""

    def __init__(self, rng: random.Random, start: int):
        self.rng = rng
        self.start = start
        self.offset = FIRST_DRAW_MS * self._u()
        self.moved = False
        self.draws: list[_Draw] = []    # the moments that may still be this slot's incident, oldest first

    def _u(self) -> float:
        return 1.0 - self.rng.random()

    def next_moment(self) -> int:
        return self.start + math.floor(self.offset)

    def advance(self) -> None:
        # d1 = 60 000 ms / u1 counts from the end of the first interval, not from d0 within it
        self.offset = (self.offset if self.moved else FIRST_DRAW_MS) / self._u()
        self.moved = True

    def forget_before(self, ts: int, horizon_ms: int) -> None:
        """Drop the moments that can no longer be the last a horizon before the end (which is ``ts`` or later)."""
        while len(self.draws) > 1 and self.draws[1].moment + horizon_ms <= ts:
            self.draws.pop(0)


def _moments_before(slots: list[_Slot], ts: int) -> Iterator[tuple[int, _Slot]]:
    for slot in slots:
        while (moment := slot.next_moment()) < ts:
            yield moment, slot
            slot.advance()
