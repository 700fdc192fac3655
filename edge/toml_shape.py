"""What a config file may be before the TOML parser reads it: its size, its nesting, its dotted keys.

Python's ``tomllib`` parses nested arrays and inline tables recursively, a few
stack frames a level: 5,000 levels raise ``RecursionError``, which used to end
``linli config check`` with exit 70 and a running agent on SIGHUP. It also
keeps every prefix of a dotted key as a key path of its own, so memory grows
with the square of the key's length: a 24 KB line ``a.a.a….a = 1`` costs
hundreds of megabytes. A gateway's config nests three levels and dots a key
once or twice; the bounds here are far above that and far below what hurts.
An integer of more digits than Python converts (4,300 by default) made ``tomllib``
raise a plain ``ValueError`` (exit 70, and a SIGHUP with it ended the agent): a run of
digits that long is refused here, with its line, like the other bounds.

:func:`check_shape` scans the text once, skipping strings and comments as TOML
defines them (a bracket or a dot inside a string counts for nothing). It does
not judge TOML syntax: where the scan meets something that is not TOML (an
unterminated string), it stops, and the parser reports the error there.

>>> check_shape('a = [[1, 2], [3]]\\n[sensor.registers]\\nb = "[[[[."')
>>> check_shape("a = " + "[" * 5000 + "]" * 5000)
Traceback (most recent call last):
edge.toml_shape.ShapeError: line 1: arrays and inline tables nested more than 32 deep
"""

from __future__ import annotations

import re
import sys

from edge.i18n import _

#: Largest config file read; a gateway with a hundred sensors has a config of a few tens of kilobytes.
MAX_BYTES = 1024 * 1024
#: Deepest nesting of arrays and inline tables (a table header ``[[x]]`` is two).
MAX_NESTING = 32
#: Most parts in one dotted key (``a.b.c`` has three).
MAX_KEY_PARTS = 32

_TOKEN = re.compile(r'"""|\'\'\'|["\'#\[\]{}\n=,.]|[0-9][0-9_]*')
#: The rest of a string after its opening quotes, up to and including the closing ones. The alternatives of
#: each group are disjoint, so a failed match backtracks linearly. No possessive quantifiers (``*+``):
#: Python 3.11.2, Bookworm's interpreter, fails a possessive group that matches zero times (an empty """""").
_STRING_REST = {
    '"': re.compile(r'(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"[^'\n]*'"),
    '"""': re.compile(r'(?:[^"\\]|\\.|"{1,2}(?!"))*"{3,5}', re.S),
    "'''": re.compile(r"(?:[^']|'{1,2}(?!'))*'{3,5}"),
}


class ShapeError(ValueError):
    """The text is beyond a bound; the message starts with the line where it went beyond."""


def check_shape(text: str) -> None:
    """Raise :class:`ShapeError` if ``text`` nests or dots keys beyond the bounds (see the module docstring)."""
    depth = dots = 0
    line, pos = 1, 0
    while match := _TOKEN.search(text, pos):
        token, pos = match.group(), match.end()
        if token in _STRING_REST:
            rest = _STRING_REST[token].match(text, pos)
            if rest is None:
                return  # not TOML from here on: the parser stops at this string and says why
            line += text.count("\n", pos, rest.end())
            pos = rest.end()
        elif token == "#":
            pos = text.find("\n", pos)
            if pos < 0:
                return
        elif token in "[{":
            depth += 1
            dots = 0
            if depth > MAX_NESTING:
                raise ShapeError(_("line {line}: arrays and inline tables nested more than {limit} deep").format(
                    line=line, limit=MAX_NESTING))
        elif token[0].isdigit():
            _check_digits(token, line)
        elif token == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                raise ShapeError(_("line {line}: a dotted key of more than {limit} parts").format(
                    line=line, limit=MAX_KEY_PARTS))
        else:  # a newline, "=", ",", "]" or "}" ends whatever dotted key was being written
            dots = 0
            if token == "\n":
                line += 1
            elif token in "]}":
                depth = max(0, depth - 1)


def _check_digits(number: str, line: int) -> None:
    """A run of digits (``_`` separators allowed, as TOML does) that Python would refuse to make an int of."""
    limit = sys.get_int_max_str_digits()   # 0: this interpreter converts any length
    if limit and len(number) - number.count("_") > limit:
        raise ShapeError(_("line {line}: a number of more than {limit} digits").format(line=line, limit=limit))
