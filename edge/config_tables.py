"""The machinery every configuration section shares: a table under validation, what sections learn of each other.

A section's check function (``edge/config_gateway.py``, ``edge/config_rules.py``, …) gets a
:class:`Table` — the TOML table with its key path, where it reports problems —
and the :class:`Context` that earlier sections filled in. :class:`Section` ties
such a function to its key in the file and its place in :class:`edge.config.Config`.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from drivers.options import Option, validate_options
from drivers.registry import driver_names
from edge import config_paths
from edge.config_paths import PathClaims
from edge.config_problems import show, translated, unknown_key
from edge.i18n import _
from edge.rules import AWAY_ALARM


class Report:
    """Problems found so far, each with its place in the file so they can be listed in file order."""

    def __init__(self) -> None:
        self._found: list[tuple[tuple[int, ...], str]] = []

    def add(self, place: tuple[int, ...], path: str, message: str) -> None:
        self._found.append((place, f"{path}: {message}"))

    def __len__(self) -> int:
        return len(self._found)

    def lines(self) -> list[str]:
        return [text for _place, text in sorted(self._found, key=lambda found: found[0])]


@dataclass
class Table:
    """One TOML table under validation: its key path (``sensor[2]``), its place in the file, where problems go."""

    path: str
    raw: dict[str, Any]
    place: tuple[int, ...]
    report: Report
    problems: int = 0

    def problem(self, key: str, message: str) -> None:
        """Report ``message`` about ``key`` (listed before the table's keys when the key is missing)."""
        position = list(self.raw).index(key) if key in self.raw else -1
        self.report.add((*self.place, position), f"{self.path}.{key}", message)
        self.problems += 1

    def check(self, spec: dict[str, Option], raw: dict[str, Any], siblings: tuple[str, ...] = ()) -> dict[str, Any]:
        """Validate ``raw`` (some keys of this table) against ``spec``; return the values that are valid.

        ``siblings`` are keys of this table checked elsewhere: an unknown key may be a typo of one of them.
        """
        values, problems = validate_options(spec, raw)
        self._report(problems, spec, siblings)
        return values

    def check_class(self, cls: type, raw: dict[str, Any], siblings: tuple[str, ...]) -> dict[str, Any]:
        """Validate a bus's or driver's own keys: its ``options``, then its ``check_options``.

        ``check_options(values) -> [(key, message)]`` judges keys together (``decimals`` and
        ``decimals_register`` both given); it only sees values that passed one by one.
        """
        values, problems = validate_options(cls.options, raw)
        if not problems:
            problems = cls.check_options(values)
        self._report(problems, cls.options, siblings)
        return values

    def _report(self, problems: list[tuple[str, str]], spec: dict[str, Option], siblings: tuple[str, ...]) -> None:
        for key, message in problems:
            if message == "unknown key":
                candidates = [k for k in (*spec, *siblings) if k not in self.raw]
                self.problem(key, unknown_key(key, candidates))
            else:
                self.problem(key, translated(message))


@dataclass
class Context:
    """What sections learn about each other while the document is validated."""

    base: Path
    #: bus name -> its kind (None when the kind is unusable, so sensors on it are not checked against it)
    bus_kinds: dict[str, str | None] = field(default_factory=dict)
    #: sensor id -> the quantities its driver reports (None when the driver is unusable)
    sensor_quantities: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    #: (section, name) -> key path of the entry that first used it
    names: dict[tuple[str, str], str] = field(default_factory=dict)
    #: alarm name ("<sensor>/<rule>") -> its severity, for outputs to check what they follow
    alarm_severities: dict[str, str] = field(default_factory=lambda: {AWAY_ALARM: "info"})
    #: every file the config names or makes the agent create, so that no two keys end up on one
    paths: PathClaims = field(default_factory=PathClaims)

    @functools.cached_property
    def driver_names(self) -> list[str]:
        """Known drivers, looked up once: scanning the entry points of every installed package takes ~10 ms."""
        return driver_names()

    def claim(self, table: Table, section: str, key: str, name: str) -> bool:
        """Record that ``table`` uses ``name``; report it and return False when another entry did first."""
        first = self.names.setdefault((section, name), table.path)
        if first != table.path:
            table.problem(key, _("{value} is already used by {other}").format(value=show(name), other=first))
            return False
        return True

    def file(self, table: Table, key: str, path: str, what: str) -> str:
        """``path`` made absolute against the config's folder; a problem when it is not a readable regular file."""
        full = os.path.normpath(self.base / path)
        if (problem := config_paths.read_file_problem(full, f"{table.path}.{key}", what, self.paths)) is not None:
            table.problem(key, problem)
        return full


@dataclass(frozen=True)
class Section:
    """A top-level TOML section: ``[key]`` (one table) or ``[[key]]`` (``many``), built into ``Config.<attribute>``.

    A new section is one ``check`` function plus one entry in :data:`SECTIONS`.
    """

    key: str
    attribute: str
    check: Callable[[Table, Context], Any]
    many: bool = False
    required: bool = False

    def build(self, raw: Any, place: tuple[int, ...], report: Report, ctx: Context) -> Any:
        if not self.many:
            if not isinstance(raw, dict):
                report.add(place, self.key, _("expected a table like [{name}], got {value}").format(
                    name=self.key, value=show(raw)))
                return None
            return self.check(Table(self.key, raw, place, report), ctx)
        if not isinstance(raw, list):
            report.add(place, self.key, _("expected an array of tables like [[{name}]], got {value}").format(
                name=self.key, value=show(raw)))
            return None
        built = []
        for index, entry in enumerate(raw):
            path = f"{self.key}[{index}]"
            if isinstance(entry, dict):
                built.append(self.check(Table(path, entry, (*place, index), report), ctx))
            else:
                report.add((*place, index), path, _("expected {expected}, got {value}").format(
                    expected=_("a table"), value=show(entry)))
        return tuple(built)


def present(values: dict[str, Any]) -> dict[str, Any]:
    """The values the file gave (``validate_options`` fills absent keys with None); dataclass defaults do the rest."""
    return {key: value for key, value in values.items() if value is not None}


#: What names a bus, sensor, rule or output (ids become topic levels, so keep to safe characters).
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_name(value: str) -> str | None:
    if not NAME.fullmatch(value):
        return _('expected 1 to 64 characters of a-z, 0-9, "_" and "-", starting with a letter or digit, '
                 'got {value}').format(value=show(value))
    return None


def not_empty(value: str) -> str | None:
    return None if value.strip() else _("must not be empty")
