"""Option specs as Markdown tables: key, type, default, allowed values, description.

Every configuration key is declared once, as a :class:`drivers.options.Option`
(a driver's ``options``, a bus's, or a section's spec in ``edge/config*.py``),
and the reference shows exactly that declaration. A section whose defaults live
in its dataclass (``[mqtt]`` → :class:`edge.config.MqttConfig`) passes the
dataclass, and the table takes the default from there.

>>> print(options_table({"timeout": Option("duration", default="1s", min=0.01, max=60.0,
...                                        help="how long to wait for an answer")}))
| key | type | default | allowed | description |
|---|---|---|---|---|
| `timeout` | duration | `"1s"` | 10ms – 1m | how long to wait for an answer |
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from drivers.options import Option, number_text
from edge.reference.markdown import cell, table

TYPE_NAMES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "true/false",
    "duration": "duration",
    "list": "list",
    "int|str": "integer or string",
}
_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))


class UndocumentedOption(ValueError):
    """An option without ``help``: the reference would have a row that says nothing."""


def duration_text(seconds: float) -> str:
    """Seconds in the largest unit that says them in whole numbers, as a config would write them.

    >>> [duration_text(s) for s in (0, 0.01, 1, 90, 3600, 604800, 1.5)]
    ['0s', '10ms', '1s', '90s', '1h', '7d', '1500ms']
    """
    for unit, size in _UNITS:
        count = seconds / size
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def toml_value(opt: Option, value: Any) -> str:
    """``value`` written as TOML for an option of ``opt``'s kind (a duration in seconds as ``"30s"``).

    >>> toml_value(Option("duration"), 90.0), toml_value(Option("float"), 64.0), toml_value(Option("bool"), True)
    ('"90s"', '64', 'true')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if opt.kind == "duration":
        return f'"{duration_text(value)}"'
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(opt, item) for item in value) + "]"
    return str(value)


def _bound(opt: Option, value: float) -> str:
    if opt.kind == "duration":
        return duration_text(value)
    return number_text(value)


def allowed(opt: Option) -> str:
    """What the spec itself restricts: its choices, or its range (a ``check`` says more in the help)."""
    if opt.choices:
        return ", ".join(f"`{toml_value(opt, choice)}`" for choice in opt.choices)
    low = None if opt.min is None else _bound(opt, opt.min)
    high = None if opt.max is None else _bound(opt, opt.max)
    if low is not None and high is not None:
        return f"{low} – {high}" if opt.kind == "duration" else f"{low}–{high}"
    if low is not None:
        return f"≥ {low}"
    if high is not None:
        return f"≤ {high}"
    return ""


def default(opt: Option, fallback: Any = None) -> str:
    """The default as the table shows it: ``required``, the value, or ``—`` when there is none."""
    if opt.required:
        return "required"
    value = opt.default if opt.default is not None else fallback
    if value is None:
        return "—"
    return f"`{toml_value(opt, value)}`"


def _dataclass_defaults(shape: type | None) -> dict[str, Any]:
    if shape is None:
        return {}
    return {f.name: f.default for f in dataclasses.fields(shape) if f.default is not dataclasses.MISSING}


def options_table(spec: dict[str, Option], defaults_from: type | None = None) -> str:
    """A Markdown table of ``spec`` in its declared order; ``defaults_from`` is a dataclass holding defaults."""
    fallbacks = _dataclass_defaults(defaults_from)
    rows = []
    for key, opt in spec.items():
        if not opt.help.strip():
            raise UndocumentedOption(f"option {key!r} has no help text; write one in its Option(…, help=…)")
        rows.append((f"`{key}`", TYPE_NAMES[opt.kind], default(opt, fallbacks.get(key)), allowed(opt), cell(opt.help)))
    return table(("key", "type", "default", "allowed", "description"), rows)
