"""What a rule kind declares: a :class:`Kind`. Each kind is one module of :mod:`edge.rules.kinds`.

A kind brings everything that differs from one kind to another: the keys a
``[[rule]]`` of it takes (``drivers.options.Option`` specs, which are also its
table in docs/configuration.md), the keys it judges together, its detector (the
arithmetic, :mod:`edge.rules.detector`) and the message of its raised
transition. What every kind shares — the common keys, the alarm's life, the
cleared and acknowledged messages — is not declared here.

>>> from edge.rules.kinds import kind
>>> stale = kind("stale")
>>> stale.name, list(stale.options), stale.detector.__name__
('stale', ['after'], 'Stale')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.options import Option
from edge.i18n import _
from edge.rules.config import RuleConfig
from edge.rules.detector import Detector

#: ``problem(key, message)``: report ``message`` about ``key`` of the ``[[rule]]`` table being validated.
Problem = Callable[[str, str], None]


@dataclass(frozen=True)
class Sensitivity:
    """The key ``linli evaluate`` sweeps to draw a kind's trade-off curve, and the values it tries.

    ``values`` are written as in a config file (``"6h"`` for a duration), so they go
    through the same validation as the option itself.
    """

    option: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Kind:
    """One rule kind, registered by name in :data:`edge.rules.kinds.KINDS`.

    ``options``: the kind's own keys, validated one by one, in the order the docs list them.
    ``detector``: the :class:`~edge.rules.detector.Detector` subclass the engine runs for each rule.
    ``raised_message(rule, value, limit) -> (english, chinese)``: the text of a raised transition
    (value and limit as the detector's signal carries them).
    ``check(params, raw, problem, path)``: keys that are only right or wrong together; ``params``
    holds the values that passed one by one (durations in seconds, absent keys left out), ``raw``
    the ``[[rule]]`` table as written, ``path`` its key path (``rule[3]``) for messages that
    name another key (``f"{path}.above"``). Messages go through gettext ``_()``.
    ``options_for(raw)``: the spec when it depends on what was written (``state`` takes a number
    for ``equals`` as well as true or false); ``options`` otherwise.
    ``sensitivity``: what ``linli evaluate`` sweeps for this kind, if anything.
    """

    name: str
    help: str
    options: dict[str, Option]
    detector: type[Detector]
    raised_message: Callable[[RuleConfig, Any, Any], tuple[str, str]]
    check: Callable[[dict[str, Any], dict[str, Any], Problem, str], None] | None = None
    options_for: Callable[[dict[str, Any]], dict[str, Option]] | None = None
    sensitivity: Sensitivity | None = None

    def spec(self, raw: dict[str, Any]) -> dict[str, Option]:
        """The options to validate ``raw`` (a ``[[rule]]`` table's own keys of this kind) against."""
        return self.options if self.options_for is None else self.options_for(raw)


# --- what several kinds' options share -------------------------------------------------------------------
WEEK = 7 * 86400.0

#: The alarm's delays, for the kinds whose condition can flicker (the others have their time built in).
DELAYS = {
    "for": Option("duration", default="0s", max=WEEK,
                  help="the value must stay out this long without a break before the alarm is raised"),
    "clear_for": Option("duration", default="0s", max=WEEK,
                        help="the value must stay back this long without a break before the alarm clears"),
}


def positive(value: float) -> str | None:
    """An ``Option.check``: more than 0."""
    return None if value > 0 else _("must be greater than {limit}, got {value}").format(limit=0, value=f"{value:g}")
