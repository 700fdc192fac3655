"""The one table of rule kinds: a ``[[rule]]``'s ``kind`` -> the module that declares it.

A new kind is one module here, exporting ``KIND`` (a :class:`edge.rules.kind.Kind`),
plus one line in :data:`KINDS`, plus its tests; configuration, engine, messages
and the generated docs tables all look kinds up here
(docs/design.md, Adding a rule kind). The order of the table is the order kinds
are listed in, in messages and in the docs.

>>> kind_names()[:3]
['threshold', 'state', 'rate']
>>> kind("stale").detector.__name__
'Stale'
>>> kind("thresold")  # doctest: +ELLIPSIS
Traceback (most recent call last):
KeyError: "no rule kind 'thresold'; known: threshold, state, rate, ..."
"""

from __future__ import annotations

import importlib

from edge.rules.kind import Kind

KINDS: dict[str, str] = {
    "threshold": "edge.rules.kinds.threshold",
    "state": "edge.rules.kinds.state",
    "rate": "edge.rules.kinds.rate",
    "inactivity": "edge.rules.kinds.inactivity",
    "continuous_use": "edge.rules.kinds.continuous_use",
    "daily_total": "edge.rules.kinds.daily_total",
    "count": "edge.rules.kinds.count",
    "stale": "edge.rules.kinds.stale",
    "routine": "edge.rules.kinds.routine",
}


def kind_names() -> list[str]:
    """Every registered kind, in the table's order."""
    return list(KINDS)


def kind(name: str) -> Kind:
    """The kind called ``name``; ``KeyError`` naming the known ones when there is none."""
    if name not in KINDS:
        raise KeyError(f"no rule kind {name!r}; known: {', '.join(KINDS)}")
    # By module path, as drivers are: a kind is one line above, and no kind's module loads before it is used.
    return importlib.import_module(KINDS[name]).KIND
