"""Whether a stream gets colour: only a terminal, and never when the person asked for none.

``NO_COLOR`` set and not empty means no colour (https://no-color.org). The CLI's rendering
layer (:mod:`edge.cli.render`) and the demo's stream, which runs outside the CLI, both ask here.
"""

from __future__ import annotations

import os
from typing import TextIO


def colour_wanted(stream: TextIO) -> bool:
    """Colour for a terminal, unless the person asked for none (``NO_COLOR`` set and not empty)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")
