"""``linli run``: the agent in the foreground, as systemd starts it."""

from __future__ import annotations

import argparse

from edge.cli.common import Subcommands, add_config_option, config_path, setup_logging
from edge.config import load_config
from edge.i18n import _


def register(sub: Subcommands) -> None:
    p = sub.add_parser("run", help=_("run the agent in the foreground"),
                       epilog=_("example: linli run --config /etc/linli/edge.toml"))
    add_config_option(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from edge.agent import Agent

    config = load_config(config_path(args))
    setup_logging(max(args.verbose, 1))
    return Agent(config).run_forever()
