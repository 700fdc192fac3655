"""How a configuration problem is worded: values shown as in the file, suggestions, translation.

Every message goes through gettext ``_()``. ``drivers.options`` knows nothing of
``edge/`` and words its problems in English; :func:`translated` puts those in the
user's language.

>>> show("gw-1"), show(True), show(3)
('"gw-1"', 'true', '3')
>>> unknown_key("hots", ["host", "port"])
'unknown key; did you mean "host"?'
"""

from __future__ import annotations

import datetime
import difflib
import re
from typing import Any

from edge.i18n import _


def show(value: Any) -> str:
    """A config value as a problem shows it: strings quoted, TOML spelling for the rest."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _("a table")
    if isinstance(value, list):
        return _("an array of tables") if value and all(isinstance(v, dict) for v in value) else _("an array")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def unknown_key(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1)
    if close:
        return _('unknown key; did you mean "{suggestion}"?').format(suggestion=close[0])
    return _("unknown key")


def unknown_choice(with_suggestion: str, without: str, value: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    if close:
        return with_suggestion.format(value=show(value), suggestion=close[0])
    return without.format(value=show(value), choices=", ".join(show(c) for c in choices))


_EXPECTED = re.compile(r"expected (?P<expected>.+?), got (?P<value>.*)", re.S)
_ONE_OF = re.compile(r"expected one of (?P<choices>.+), got (?P<value>.*)", re.S)
_AT_LEAST = re.compile(r"must be at least (?P<limit>.+?), got (?P<value>.*)", re.S)
_AT_MOST = re.compile(r"must be at most (?P<limit>.+?), got (?P<value>.*)", re.S)
_ABOVE = re.compile(r"must be greater than (?P<limit>.+?), got (?P<value>.*)", re.S)
_CONTROLS = re.compile(r"must not contain control characters, got (?P<value>.*)", re.S)


def translated(message: str) -> str:
    """A problem from ``drivers.options`` (English, it knows nothing of edge/) in the user's language.

    Messages of a driver's own ``check`` are passed on as the driver wrote them.
    """
    if message in _fixed_messages():
        return _fixed_messages()[message]
    if match := _ONE_OF.fullmatch(message):
        return _("expected one of {choices}, got {value}").format(
            choices=match["choices"], value=_value(match["value"]))
    if (match := _EXPECTED.fullmatch(message)) and match["expected"] in _type_names():
        return _("expected {expected}, got {value}").format(
            expected=_type_names()[match["expected"]], value=_value(match["value"]))
    if match := _AT_LEAST.fullmatch(message):
        return _("must be at least {limit}, got {value}").format(limit=match["limit"], value=match["value"])
    if match := _AT_MOST.fullmatch(message):
        return _("must be at most {limit}, got {value}").format(limit=match["limit"], value=match["value"])
    if match := _ABOVE.fullmatch(message):
        return _("must be greater than {limit}, got {value}").format(limit=match["limit"], value=match["value"])
    if match := _CONTROLS.fullmatch(message):
        return _("must not contain control characters, got {value}").format(value=match["value"])
    return message


def _fixed_messages() -> dict[str, str]:
    return {"is required": _("is required"), "must not be empty": _("must not be empty")}


def _value(shown: str) -> str:
    return _("a table") if shown == "a table" else shown


def _type_names() -> dict[str, str]:
    return {
        "an integer": _("an integer"),
        "a number": _("a number"),
        "a finite number": _("a finite number"),
        "a string": _("a string"),
        "true or false": _("true or false"),
        'a duration like "30s" or "5m"': _('a duration like "30s" or "5m"'),
        "a list": _("a list"),
        "an integer or a string": _("an integer or a string"),
    }
