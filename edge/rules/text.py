"""How a transition's message writes a value and a duration; shared by every kind's ``raised_message``.

>>> duration(43200), shown(0.1 + 0.2), shown(None), shown(True)
('12h', '0.3', '-', 'true')
"""

from __future__ import annotations

from typing import Any


def duration(seconds: float) -> str:
    """``43200`` → ``"12h"``, ``5400`` → ``"1h30m"``, ``10`` → ``"10s"``.

    >>> duration(5400), duration(0.5)
    ('1h30m', '0.5s')
    """
    if seconds < 1:
        return f"{seconds:g}s"
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
