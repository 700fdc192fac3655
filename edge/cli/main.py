"""The ``linli`` parser, made from the command groups, and :func:`main`, which runs the chosen command.

Every exit status comes from :mod:`edge.exits`; a :class:`~edge.errors.LinliError` becomes its
message and its status, never a traceback (unless ``--debug``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from edge.cli import (alarm, audit, away, completion, config, decode, demo, doctor, evaluate, explain, logs, outbox,
                      probe, render, replay, run, scan, status, update, version, watch)
from edge.cli.common import Parser, Register, add_config_option
from edge.errors import LinliError
from edge.exits import EX_INTERRUPTED, EX_OK, EX_SOFTWARE, EX_USAGE
from edge.i18n import _

#: The command groups, in the order ``linli --help`` lists them: adding a group is adding its line here.
#: Each is the ``register(sub)`` of a module of this package.
GROUPS: tuple[Register, ...] = (
    run.register,
    config.register,
    demo.register,
    replay.register,
    evaluate.register,
    explain.register,
    status.register,
    watch.register,
    doctor.register,
    outbox.register,
    away.register,
    alarm.register,
    decode.register,
    probe.register,
    scan.register,
    update.register,
    audit.register,
    version.register,
    completion.register,
    logs.register,
)

EPILOG = _("""examples:
  linli config check /etc/linli/edge.toml   validate a config, open no device
  linli run --config /etc/linli/edge.toml   start the agent (systemd does this)
  linli demo --for 60                       simulated devices -> agent -> local broker, for a minute
--config may come before or after the command; given twice, the one after wins.
Without it the file named by LINLI_CONFIG is read, else /etc/linli/edge.toml.
""")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="linli", description=_("linli-edge gateway agent and technician tool"),
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_("more log output (-vv: debug)"))
    parser.add_argument("--debug", action="store_true", help=_("show tracebacks of internal errors"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for register in GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:  # "linli" or "linli config" alone: show what can follow
        parser.print_help(sys.stderr)
        return EX_USAGE
    try:
        return func(args)
    except LinliError as exc:
        render.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except BrokenPipeError:  # "linli decode … | head": the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK
    except Exception as exc:
        if args.debug:
            raise
        render.note(_("internal error: {error} (run again with --debug for details)").format(error=exc))
        return EX_SOFTWARE
