"""``linli version``."""

from __future__ import annotations

import argparse

from edge import __version__
from edge.cli import render
from edge.cli.common import Subcommands
from edge.exits import EX_OK
from edge.i18n import _


def register(sub: Subcommands) -> None:
    p = sub.add_parser("version", help=_("print the version"))
    p.set_defaults(func=cmd_version)


def cmd_version(args: argparse.Namespace) -> int:
    render.out(f"linli-edge {__version__}")
    return EX_OK
