"""``linli config check``: is a configuration file usable, without opening any device."""

from __future__ import annotations

import argparse

from edge import config_apply_cli
from edge.cli import render
from edge.cli.common import Subcommands, add_config_option, add_json_option, config_path, subcommands
from edge.config import load_config
from edge.exits import EX_OK
from edge.i18n import _


def register(sub: Subcommands) -> None:
    p = sub.add_parser("config", help=_("configuration tools"))
    config_sub = subcommands(p, "config_command")
    c = config_sub.add_parser("check", help=_("validate a configuration file without opening any device"),
                              epilog=_("examples:\n  linli config check /etc/linli/edge.toml\n"
                                       "  linli config check --config /etc/linli/edge.toml --json\n"
                                       "exit status 0 when valid, 78 when not"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("path", nargs="?", help=_("file to check (default: --config)"))
    add_config_option(c)
    add_json_option(c)
    c.set_defaults(func=cmd_config_check)
    config_apply_cli.add_command(config_sub, add_config_option, config_path)


def cmd_config_check(args: argparse.Namespace) -> int:
    path = args.path or config_path(args)
    config = load_config(path)
    found = {"ok": True, "path": str(path), "gateway": config.gateway.id, "buses": len(config.buses),
             "sensors": len(config.sensors)}
    if args.json:
        render.emit_json(found, ascii_only=True)
    else:
        render.out(render.paint(_("ok"), render.GREEN) + "  " + _(
            "{path}: gateway {gateway}, {buses} buses, {sensors} sensors").format(**found))
    return EX_OK
