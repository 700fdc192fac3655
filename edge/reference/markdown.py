"""Markdown tables from plain text.

>>> print(table(("key", "meaning"), [("`a|b`", cell("x | y <z>"))]))
| key | meaning |
|---|---|
| `a|b` | x \\| y \\<z> |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell(text: str) -> str:
    """Plain text made safe inside a table cell: no column break, no HTML tag, no emphasis."""
    for char in ("\\", "|", "<", "*"):
        text = text.replace(char, "\\" + char)
    return text


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; cells are taken as they are (Markdown already)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
