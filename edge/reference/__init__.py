"""Reference tables made from the code, kept in the Markdown documents between marker comments.

A generated block looks like this in a document::

    <!-- generated: driver/contact -->

    | key | type | default | allowed | description |
    ...

    <!-- end generated -->

:func:`refresh` renders every block of a document afresh from the code: the
option specs (:mod:`edge.reference.configuration`) and the MQTT contract
(:mod:`edge.reference.contract`). ``python -m edge.reference`` rewrites the
project's documents; ``--check`` only reports which differ. The test suite runs
the same comparison, so a table cannot drift from the code unnoticed.

>>> refresh("intro\\n<!-- generated: x -->\\nold\\n<!-- end generated -->\\n", {"x": lambda: "new"})
'intro\\n<!-- generated: x -->\\n\\nnew\\n\\n<!-- end generated -->\\n'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edge.reference.configuration import configuration_blocks
from edge.reference.contract import contract_blocks

#: The repository this package was loaded from (the documents are not part of an installed package).
ROOT = Path(__file__).resolve().parents[2]
#: Each document with generated blocks, relative to the repository, and the blocks it must hold.
DOCUMENTS: dict[str, Callable[[], dict[str, Callable[[], str]]]] = {
    "docs/configuration.md": configuration_blocks,
    "docs/design.md": contract_blocks,
}
REGENERATE = ".venv/bin/python -m edge.reference"

_BLOCK = re.compile(r"<!-- generated: (?P<name>[\w./-]+) -->\n.*?<!-- end generated -->", re.S)


class DocumentError(ValueError):
    """A document whose markers do not match the blocks it must hold."""


def refresh(text: str, blocks: dict[str, Callable[[], str]]) -> str:
    """``text`` with every generated block rendered again; each of ``blocks`` must appear exactly once."""
    seen: list[str] = []

    def render(match: re.Match) -> str:
        name = match["name"]
        if name not in blocks:
            raise DocumentError(f"generated block {name!r} is unknown; known: {', '.join(blocks)}")
        seen.append(name)
        return f"<!-- generated: {name} -->\n\n{blocks[name]()}\n\n<!-- end generated -->"

    fresh = _BLOCK.sub(render, text)
    twice = sorted({name for name in seen if seen.count(name) > 1})
    if twice:
        raise DocumentError(f"generated block(s) {', '.join(twice)} appear more than once")
    missing = [name for name in blocks if name not in seen]
    if missing:
        raise DocumentError(f"no place for the generated block(s) {', '.join(missing)}: put the lines "
                            f"'<!-- generated: NAME -->' and '<!-- end generated -->' where each belongs")
    return fresh
