"""``linli config apply FILE``: on the gateway, what ``config_set`` does from afar.

The file goes to the running agent over its control socket as a ``config_set`` request: the
agent checks it, writes it as its managed copy, applies it, waits until it is healthy and
rolls it back if it is not (:mod:`edge.config_remote`). This command waits for that answer;
the installed file given by ``--config`` stays as it is (decision 0009).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from edge.errors import LinliError
from edge.i18n import _

#: Beyond the health gate's deadline: the reload before it and the rollback after it.
MARGIN = 60.0


class ApplyRefused(LinliError):
    """The agent refused the file or rolled it back (exit 1)."""

    exit_code = 1


def add_command(sub: Any, add_config_option: Callable[[argparse.ArgumentParser], None],
                config_path: Callable[[argparse.Namespace], str]) -> None:
    """Add ``apply`` to the ``linli config`` subcommands ``sub``; ``config_path(args)`` names the installed file."""
    p = sub.add_parser("apply", help=_("apply a configuration file to the running agent, rolled back if unhealthy"),
                       epilog=_("examples:\n  linli config apply new-edge.toml\n"
                                "  linli config apply --deadline 120 new-edge.toml\n"
                                "exit status 0 when applied and healthy, 1 when refused or rolled back, "
                                "69 when no agent answers"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help=_("the whole new configuration"))
    p.add_argument("--deadline", type=float, default=60.0, metavar="SECONDS",
                   help=_("how long the new configuration has to prove healthy (default: %(default)s)"))
    p.add_argument("--json", action="store_true", help=_("print the agent's result as JSON"))
    add_config_option(p)
    p.set_defaults(func=lambda args: run(args, config_path(args)))


def run(args: argparse.Namespace, config_path: str) -> int:
    from edge.config import load_config
    from edge.control import request

    try:
        with open(args.file, encoding="utf-8-sig") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApplyRefused(_("cannot read {path}: {reason}").format(path=args.file, reason=exc)) from None
    socket = load_config(config_path).control.socket
    reply = request(socket, "config_set", {"toml": text, "deadline_s": args.deadline},
                    timeout=args.deadline + MARGIN)
    if not reply.get("ok"):
        raise ApplyRefused(reply.get("error") or _("the agent refused the configuration"))
    result = reply["result"]
    if args.json:
        print(json.dumps(result))
    else:
        print(_("applied and healthy: configuration {sha256}").format(sha256=result["sha256"]))
    return 0
