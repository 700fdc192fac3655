"""What every rule kind looks like to the alarm lifecycle: a detector emitting :class:`Signal` values.

A detector knows only its kind's arithmetic (each kind's module in
:mod:`edge.rules.kinds` holds its detector). It turns readings (and its own
timers) into a signal: is the value *out* (the alarm condition holds) and is it
*back* (past the clear limit). The two differ only inside a hysteresis band.
Delays, the active window, latching, acknowledging and away mode are the same
for every kind and live in :mod:`edge.rules.alarm`.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from edge.rules.config import RuleConfig
from edge.rules.window import Calendar

#: Counter increases are differences of floats (1021.51 - 1021.50 = 0.00999…): compare with this slack.
_RELATIVE_SLACK = 1e-9


def at_least(amount: float, limit: float, scale: float) -> bool:
    """``amount >= limit``, forgiving the rounding of a difference of two readings near ``scale``."""
    return amount >= limit - _RELATIVE_SLACK * max(1.0, abs(scale))


def more_than(amount: float, limit: float, scale: float) -> bool:
    """``amount > limit``, forgiving the rounding of a difference of two readings near ``scale``."""
    return amount > limit + _RELATIVE_SLACK * max(1.0, abs(scale))


def same(value: Any, wanted: bool | float) -> bool:
    """``value == wanted`` where a bool and 0/1 mean the same (a driver may report presence either way)."""
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


class Signal(NamedTuple):
    """The condition as of now: ``out`` raises (after ``for``), ``back`` clears (after ``clear_for``).

    A named tuple, not a dataclass: two or three are made per reading, and a tuple is made in
    less than half the time (a street's replay is about a tenth faster).

    ``words``: ``(English, Chinese)`` for a raise, where the detector knows more than its value and limit
    say (a learned routine's times); otherwise the kind's ``raised_message`` words it.
    """

    out: bool
    back: bool
    value: Any
    limit: Any
    words: tuple[str, str] | None = None


class Detector:
    """Base of the kinds. Subclasses list their persisted attributes in ``fields``.

    ``reading`` sees usable readings only (quality not ``bad``, a value present),
    except for detectors with ``hears_bad`` (stale), which see every reading.
    """

    fields: ClassVar[tuple[str, ...]] = ()
    hears_bad: ClassVar[bool] = False
    #: A learning detector also has ``learned()``, ``load_learned(state)``, ``learning_key()``,
    #: ``warmup_until(now)``, ``explain(now)`` and ``learn_as(other)``: state kept apart from ``state()``
    #: (:meth:`edge.rules.RuleEngine.learned`, :meth:`~edge.rules.RuleEngine.fork`).
    learns: ClassVar[bool] = False

    def __init__(self, rule: RuleConfig, calendar: Calendar):
        self.rule = rule
        self.params = rule.params
        self.calendar = calendar

    def reading(self, ts: int, value: Any, usable: bool) -> Signal | None:
        """The signal after a reading; ``None`` when the reading tells nothing new."""
        raise NotImplementedError

    def due(self) -> int | None:
        """When this detector's own timer fires next (ms), if it has one."""
        return None

    def fire(self, now: int) -> Signal | None:
        """Run the timer due at ``now``; the signal it changes to."""
        return None

    def start(self, now: int) -> None:
        """The engine's clock is known for the first time (before any reading of this rule)."""

    def resume(self, now: int) -> Signal | None:
        """Away mode ended at ``now``; a kind may restart its measure of time."""
        return None

    def state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.fields}

    def load(self, state: dict[str, Any]) -> None:
        for name in self.fields:
            value = state[name]
            setattr(self, name, list(value) if isinstance(value, list) else value)


def seconds_ms(seconds: float) -> int:
    return round(seconds * 1000)
