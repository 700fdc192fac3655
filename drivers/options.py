"""Declarative option specs for buses and drivers, validated without any I/O.

A driver lists its keys as :class:`Option` objects; :func:`validate_options`
checks a raw TOML table against them and returns cleaned values plus every
problem found, each as ``(key, message)`` so the caller can prefix the full
key path (``sensor[2].interval``). Whatever the kind, a string holding a control
character (:func:`is_control`) is refused, and messages show one escaped.

>>> spec = {"interval": Option("duration", default="10s")}
>>> validate_options(spec, {"interval": "5m"})
({'interval': 300.0}, [])
>>> validate_options(spec, {"interval": "fast", "colour": 1})[1]
[('interval', 'expected a duration like "30s" or "5m", got "fast"'), ('colour', 'unknown key')]
>>> address = {"address": Option("int|str", min=0, max=250)}
>>> validate_options(address, {"address": "12345678"}), validate_options(address, {"address": 251})[1]
(({'address': '12345678'}, []), [('address', 'must be at most 250, got 251')])
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: Any) -> float:
    """Parse ``"250ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` into seconds.

    >>> parse_duration("1.5s")
    1.5
    >>> parse_duration("fast")
    Traceback (most recent call last):
    ValueError: expected a duration like "30s" or "5m", got "fast"
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else math.inf
    if not math.isfinite(seconds):  # no match, or so many digits that the float is infinite
        raise ValueError(f'expected a duration like "30s" or "5m", got {_show(text)}')
    return seconds


#: Unicode categories no option value may hold: control characters (C0, DEL, C1, such as NUL and the ESC that
#: starts a terminal command), format characters (bidirectional overrides, zero-width), line and paragraph
#: separators, and lone surrogates. A device path, topic or id with one fails at run time or reads as another.
_CONTROL_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


def is_control(char: str) -> bool:
    """True for a character that must never reach a topic, a path or a terminal as it is.

    >>> is_control("\\x1b"), is_control("\\u202e"), is_control("号"), is_control("\\u3000")
    (True, True, False, False)
    """
    return unicodedata.category(char) in _CONTROL_CATEGORIES


def escape_controls(text: str) -> str:
    """``text`` with every control character (see :func:`is_control`) written as a Python escape.

    For messages that show a value: a NUL or an ESC must not reach the terminal as it is.

    >>> print(escape_controls("gw\\x00-\\x1b[2J-\\u202e-二号楼"))
    gw\\x00-\\x1b[2J-\\u202e-二号楼
    """
    if not any(is_control(char) for char in text):
        return text
    return "".join(_escaped(char) if is_control(char) else char for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def number_text(limit: float) -> str:
    """A bound as a person writes it: ``1048576``, not ``1.04858e+06``; ``0.01`` stays ``0.01``."""
    return str(int(limit)) if float(limit).is_integer() else f"{limit:g}"


_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "duration": 'a duration like "30s" or "5m"',
    "list": "a list",
    "int|str": "an integer or a string",
}


@dataclass(frozen=True)
class Option:
    """One configuration key.

    ``kind`` is one of ``int``, ``float``, ``str``, ``bool``, ``duration``,
    ``list``, or ``int|str`` for keys with two forms (an M-Bus primary address
    5 or secondary address "12345678"; ``min``/``max`` then apply to integers
    only); ``check`` may return an error message for a well-typed value.
    """

    kind: str
    required: bool = False
    default: Any = None
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    check: Callable[[Any], str | None] | None = None
    help: str = field(default="", compare=False)


def _coerce(opt: Option, value: Any) -> tuple[Any, str | None]:
    kind = opt.kind
    if kind == "duration":
        try:
            return parse_duration(value), None
        except ValueError as exc:
            return None, str(exc)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list),
        "int|str": isinstance(value, (int, str)) and not isinstance(value, bool),
    }[kind]
    if not ok:
        return None, f"expected {_TYPE_NAMES[kind]}, got {_show(value)}"
    if isinstance(value, str) and any(is_control(char) for char in value):
        return None, f"must not contain control characters, got {_show(value)}"
    if kind == "float":
        # TOML has nan and inf, and an integer may be too large for a float: no option can run on those.
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            return None, f"expected a finite number, got {_show(value)}"
        return number, None
    return value, None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{escape_controls(value)}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def validate_options(spec: dict[str, Option], raw: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Check ``raw`` against ``spec``: returns ``(values, problems)``.

    Unknown keys are problems. Missing optional keys take their default.
    """
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, opt in spec.items():
        if key not in raw:
            if opt.required:
                problems.append((key, "is required"))
            elif opt.default is not None:
                value, err = _coerce(opt, opt.default)
                values[key] = value if err is None else opt.default
            else:
                values[key] = None
            continue
        value, err = _coerce(opt, raw[key])
        if err is None and opt.choices and value not in opt.choices:
            err = "expected one of " + ", ".join(_show(c) for c in opt.choices) + f", got {_show(value)}"
        bounded = opt.kind != "int|str" or isinstance(value, int)
        if err is None and bounded and opt.min is not None and value < opt.min:
            err = (f"must be at least {number_text(opt.min)}, got {raw[key]!r}" if opt.kind != "duration"
                   else f"must be at least {number_text(opt.min)}s, got {_show(raw[key])}")
        if err is None and bounded and opt.max is not None and value > opt.max:
            err = (f"must be at most {number_text(opt.max)}, got {raw[key]!r}" if opt.kind != "duration"
                   else f"must be at most {number_text(opt.max)}s, got {_show(raw[key])}")
        if err is None and opt.check is not None:
            err = opt.check(value)
        if err is not None:
            problems.append((key, err))
        else:
            values[key] = value
    for key in raw:
        if key not in spec:
            problems.append((key, "unknown key"))
    return values, problems
