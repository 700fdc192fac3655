"""What the ``linli`` commands share: the parser class, ``--config``, asking the running agent, option types.

A command group module (``edge/cli/<group>.py``) has a ``register(sub)`` that adds its
subcommand(s) to the ``linli`` subparsers ``sub`` with their handlers, and is listed once
in :data:`edge.cli.main.GROUPS`. A module elsewhere that follows the older pattern
``add_command(sub, add_config_option, handler)`` joins the same list through :func:`command`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from edge.config import DEFAULT_PATH, load_config
from edge.errors import LinliError
from edge.exits import EX_REFUSED, EX_USAGE
from edge.i18n import _

#: The ``linli`` subparsers (what ``add_subparsers`` returns), which each group adds its commands to.
Subcommands = Any
#: Adds one command group to the ``linli`` subparsers.
Register = Callable[[Subcommands], None]
Handler = Callable[[argparse.Namespace], int]


class CommandRefused(LinliError):
    """The agent understood the request and said no (exit 1)."""

    exit_code = EX_REFUSED


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with EX_USAGE (64) instead of 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, _("linli: error: {message}\n").format(message=message))


def subcommands(parser: argparse.ArgumentParser, dest: str) -> Subcommands:
    """The SUBCOMMAND choices under a command such as ``linli alarm``."""
    return parser.add_subparsers(dest=dest, metavar="SUBCOMMAND", parser_class=Parser)


def command(add_command: Callable[[Subcommands, Callable[[argparse.ArgumentParser], None], Handler], None],
            handler: Handler) -> Register:
    """A group from a module with ``add_command(sub, add_config_option, handler)``, run by ``handler``."""
    return lambda sub: add_command(sub, add_config_option, handler)


def config_path(args: argparse.Namespace) -> str:
    """The configuration file this command reads.

    ``--config`` after the command wins over one before it (argparse lets the subcommand's value
    replace the main parser's), which wins over ``LINLI_CONFIG``, which wins over the default path.
    """
    return getattr(args, "config", None) or os.environ.get("LINLI_CONFIG") or DEFAULT_PATH


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: on the main parser and on each command that reads the configuration.

    SUPPRESS as the default everywhere: a command's parser then sets the value only when the option
    follows the command, so it replaces one given before the command and otherwise leaves it alone.
    :func:`config_path` falls back to LINLI_CONFIG and the default path.
    """
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help=_("configuration file (default: $LINLI_CONFIG, else {path})").format(path=DEFAULT_PATH))


def add_json_option(parser: argparse.ArgumentParser, text: str | None = None) -> None:
    """``--json``: the command prints one JSON value (or one per line) instead of text."""
    parser.add_argument("--json", action="store_true", help=text or _("machine-readable output"))


def ask_agent(args: argparse.Namespace, name: str, request_args: dict | None = None) -> dict:
    """Send one command to the running agent over its control socket; exit 1 if it refuses."""
    from edge.control import request

    reply = request(load_config(config_path(args)).control.socket, name, request_args)
    if not reply.get("ok"):
        raise CommandRefused(reply.get("error") or _("the agent refused the request"))
    return reply["result"]


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def seconds(text: str) -> float:
    """A timeout on the command line: 0.01 to 60 seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 60:
        raise argparse.ArgumentTypeError(_("{value!r} is not a time between 0.01 and 60 seconds").format(value=text))
    return value
