"""How every ``linli`` command shows what it found: aligned columns, colour, JSON, warnings and errors.

Handlers compute; this layer prints. Colour only goes to a terminal, and never when
``NO_COLOR`` is set to anything but the empty string (https://no-color.org). Columns are
aligned by the columns a text takes on a terminal, where a Chinese character takes two,
so the translated tables line up too.

>>> print(table([["field", "value"], ["id", "12345678"], ["流量", "3"]]))
field  value
id     12345678
流量   3
>>> print("\\n".join(hex_dump(bytes(range(0x10, 0x22)), mark=17)))
0000  10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
0010  20 21
         ^^
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from edge.i18n import _
from edge.terminal import colour_wanted

GREEN, RED, YELLOW = "32", "31", "33"


@dataclass(frozen=True)
class Painted:
    """A cell shown in a colour (an SGR code such as :data:`RED`) where colour is wanted."""

    text: str
    colour: str


Cell = str | Painted


def paint(text: str, colour: str, stream: TextIO | None = None) -> str:
    """``text`` in ``colour`` when ``stream`` (default: stdout) wants colour, else as it is."""
    if colour_wanted(sys.stdout if stream is None else stream):
        return f"\033[{colour}m{text}\033[0m"
    return text


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal, where a Chinese character takes two."""
    from edge.replay import display_width as width   # the replay's table measures the same way

    return width(text)


def pad(cell: Cell, width: int, right: bool = False, stream: TextIO | None = None) -> str:
    """``cell`` padded with spaces to ``width`` terminal columns (on the left when ``right``), coloured if painted."""
    text = _plain(cell)
    spaces = " " * max(0, width - display_width(text))
    shown = paint(text, cell.colour, stream) if isinstance(cell, Painted) else text
    return spaces + shown if right else shown + spaces


def line(cells: Sequence[Cell], widths: Sequence[int], right: Collection[int] = (), sep: str = " ",
         stream: TextIO | None = None) -> str:
    """One row of columns of fixed ``widths``; cells past the widths are not padded. ``right``: column numbers."""
    shown = []
    for column, cell in enumerate(cells):
        if column < len(widths):
            shown.append(pad(cell, widths[column], column in right, stream))
        else:
            shown.append(pad(cell, 0, stream=stream))
    return sep.join(shown)


def table(rows: Sequence[Sequence[Cell]], right: Collection[int] = (), sep: str = "  ", indent: str = "",
          stream: TextIO | None = None) -> str:
    """``rows`` (the first may be a heading) as aligned columns, each as wide as its widest cell.

    The last column is not padded unless it is right-aligned, so no line ends in spaces.
    """
    if not rows:
        return ""
    count = max(len(row) for row in rows)
    widths = [max((display_width(_plain(row[c])) for row in rows if c < len(row)), default=0) for c in range(count)]
    if count - 1 not in right:
        widths = widths[:-1]
    return "\n".join(indent + line(row, widths, right, sep, stream) for row in rows)


def _plain(cell: Cell) -> str:
    return cell.text if isinstance(cell, Painted) else str(cell)


def out(text: str = "", flush: bool = False) -> None:
    """A line for the person (or the script) reading stdout."""
    print(text, flush=flush)


def note(text: str) -> None:
    """A line on stderr: what went wrong, what to try."""
    print(text, file=sys.stderr)


def emit_json(value: Any, ascii_only: bool = False, flush: bool = False) -> None:
    """``value`` as one line of JSON on stdout; ``ascii_only`` escapes what is not ASCII (as some always did)."""
    print(json.dumps(value, ensure_ascii=ascii_only), flush=flush)


def warn(message: str) -> None:
    """``warning: message`` on stderr, the word in yellow on a terminal."""
    note(paint(_("warning"), YELLOW, sys.stderr) + ": " + message)


def error(message: str, label: str | None = None) -> None:
    """``error: message`` (or another ``label``) on stderr, the label in red on a terminal."""
    note(paint(_("error") if label is None else label, RED, sys.stderr) + ": " + message)


class Progress:
    """One line on stderr redrawn in place while a long command works, only when stderr is a terminal.

    With ``every_s``, :meth:`due` says whether that long has passed since the last redraw: a loop
    over many thousand rows asks it before building the line, so the bar costs nothing.
    """

    def __init__(self, every_s: float = 0.0) -> None:
        self.shown = sys.stderr.isatty()
        self.every_s = every_s
        self.next_draw = 0.0

    def due(self) -> bool:
        if not self.shown:
            return False
        now = time.monotonic()
        if now < self.next_draw:
            return False
        self.next_draw = now + self.every_s
        return True

    def show(self, text: str) -> None:
        if self.shown:
            print("\r\033[K" + text, end="", file=sys.stderr, flush=True)

    def keep(self, text: str) -> None:
        """The last state, left on its line (a finished bar), the cursor on the next."""
        if self.shown:
            print("\r\033[K" + text, file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.shown:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def bar(share: float, width: int = 30, empty: str = ".") -> str:
    """``[#####.....]``: ``share`` (0 to 1) of ``width`` filled; full only when all is done.

    >>> bar(0.5, 10), bar(0.99, 10, " ")
    ('[#####.....]', '[######### ]')
    """
    filled = max(0, min(width, int(share * width)))
    return "[" + "#" * filled + empty * (width - filled) + "]"


def hex_dump(data: bytes, mark: int | None = None, width: int = 16) -> list[str]:
    """``data`` as lines of ``width`` bytes with their offset; ``^^`` under the byte at ``mark``."""
    lines = []
    for start in range(0, max(len(data), 1), width):
        lines.append(f"{start:04x}  " + data[start:start + width].hex(" "))
        if mark is not None and start <= mark < start + width:
            lines.append(" " * (6 + 3 * (mark - start)) + "^^")
    if data and mark == len(data) and len(data) % width == 0:
        lines.append(f"{len(data):04x}  ^^")  # the frame ended where more was expected
    return lines
