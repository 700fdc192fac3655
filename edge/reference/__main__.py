"""``python -m edge.reference [--check] [--root DIR]``: rewrite (or check) the generated tables of the docs.

A tool for whoever changes an option spec or a payload schema, run from a
checkout; exit status 0 when the documents match the code, 1 when ``--check``
found one that does not, 65 for a document whose markers are wrong, 66 when a
document cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edge.exits import EX_DATAERR, EX_NOINPUT, EX_OK
from edge.reference import DOCUMENTS, REGENERATE, ROOT, DocumentError, refresh

#: The docs differ from what the code renders: not an error of the tool, a finding (like diff's 1).
EX_STALE = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.reference",
                                     description="Render the option tables and the MQTT contract tables of the "
                                                 "docs from the code.")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a document differs from the code")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose docs/ to use (default: the one this package comes from)")
    args = parser.parse_args(argv)
    fresh: dict[Path, str] = {}
    for document, blocks in DOCUMENTS.items():
        path = args.root / document
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return EX_NOINPUT
        try:
            rendered = refresh(text, blocks())
        except DocumentError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return EX_DATAERR
        if rendered != text:
            fresh[path] = rendered
    if args.check:
        if fresh:
            print(f"{', '.join(map(str, fresh))} differ from the code; run {REGENERATE}", file=sys.stderr)
            return EX_STALE
        return EX_OK
    for path, rendered in fresh.items():    # only once every document rendered: none is left half done
        path.write_text(rendered, encoding="utf-8")
        print(f"{path}: tables rewritten from the code")
    return EX_OK

if __name__ == "__main__":
    sys.exit(main())
