"""The ``linli evaluate`` command: its options, reading the trace with a progress bar, printing the figures.

What is measured is :mod:`edge.evaluate`; how it is shown, :mod:`edge.evaluate_report`.
This module is imported to build the parser, so it imports neither at the top:
``linli --help`` does not load the rules engine.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from edge.cli import render
from edge.cli.common import command, config_path
from edge.exits import EX_OK
from edge.i18n import _

EPILOG = _("""Replays the trace through the config's rules, each home (a sensor and quantity a rule
watches) alone, and prints per rule its false alarms per home per 30 days (nuisance: raised
in a silence that ended within 24 h; welfare check: in one of 24 h or more) and, with
--incidents, how late it raises when the water stops for good at random moments. A rule
with a sensitivity knob (inactivity: window; routine: stretch) gets a curve over the knob's values.
Exit status 0, 65 for a bad trace (the message names the line), 66 when it is missing,
74 when it cannot be read, 78 for a bad config.
example: linli evaluate --config edge.toml street-year.csv --each-sensor --incidents 20
""")

#: Seconds between two redraws of the progress bar: often enough to see it move, rarely enough to cost nothing.
_PROGRESS_EVERY_S = 0.2
#: Most incidents per home: each is a fork of the home's engine, and a thousand already give a smooth median.
MAX_INCIDENTS = 1000


def add_command(sub: Any, add_config_option: Callable[[argparse.ArgumentParser], None],
                handler: Callable[[argparse.Namespace], int]) -> None:
    """Add ``evaluate`` to the ``linli`` subcommands ``sub``, run by ``handler`` (which calls :func:`run`)."""
    p = sub.add_parser("evaluate", help=_("measure the rules' false alarms and detection delays on a recorded trace"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("trace", metavar="TRACE.csv", help=_("CSV with the header ts,sensor,quantity,value[,quality]"))
    p.add_argument("--incidents", type=_count, default=0, metavar="N",
                   help=_("incidents per home, at random moments (default: %(default)s)"))
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help=_("seed of the incident moments; the same seed gives the same moments (default: %(default)s)"))
    p.add_argument("--horizon", type=_horizon, default="7d", metavar="DURATION",
                   help=_("how long after an incident a raise still counts as detection (default: %(default)s)"))
    p.add_argument("--use", type=_amount, default=0.001, metavar="AMOUNT",
                   help=_("rise of the counter that counts as use, in its unit (default: %(default)s m³, 1 L)"))
    p.add_argument("--each-sensor", action="store_true",
                   help=_("apply each rule to every sensor of the trace reporting its quantity"))
    p.add_argument("--no-curve", dest="curve", action="store_false",
                   help=_("leave out the sensitivity curve: each of its values is one more rule to run"))
    p.add_argument("--json", action="store_true", help=_("one JSON object with every figure"))
    p.set_defaults(func=handler)


def run(args: argparse.Namespace, config_file: str, warn: Callable[[str], None]) -> int:
    """``linli evaluate`` with the config at ``config_file``; ``warn`` tells of rules without a home in the trace."""
    from edge.config import load_config
    from edge.evaluate import Evaluation, Settings
    from edge.evaluate_report import as_json, as_text

    config = load_config(config_file)
    settings = Settings(use=args.use, incidents=args.incidents, seed=args.seed,
                        horizon_ms=round(args.horizon * 1000), each_sensor=args.each_sensor,
                        curve=args.curve)
    evaluation = Evaluation(config, settings)
    read_into(evaluation, args.trace, _Progress() if sys.stderr.isatty() else None)
    for tally in evaluation.tallies:
        if not tally.homes:
            warn(_("no home in the trace for {rule}: no row of {quantity} of sensor {sensor}").format(
                rule=tally.rule.alarm, quantity=tally.rule.quantity, sensor=tally.rule.sensor))
    render.out(as_json(evaluation) if args.json else as_text(evaluation))
    return EX_OK


def read_into(evaluation: Any, path: str, progress: _Progress | None) -> None:
    """Feed ``evaluation`` the readings of the trace at ``path`` as they are read, then finish it."""
    from edge.trace import open_trace, read_trace, trace_lines

    with open_trace(path) as file:
        info = os.fstat(file.fileno())
        counted = _Counted(file)
        readings = read_trace(trace_lines(counted, path), name=os.path.basename(path))
        try:
            for reading in readings:
                evaluation.feed(reading)
                if progress is not None:
                    progress.show(counted.bytes, info.st_size if stat.S_ISREG(info.st_mode) else None,
                                  evaluation.rows)
        finally:
            if progress is not None:
                progress.clear()
    evaluation.finish()


class _Counted:
    """A file that counts the bytes read from it: how far the progress bar is."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.bytes = 0

    def read(self, size: int) -> bytes:
        chunk = self.file.read(size)
        self.bytes += len(chunk)
        return chunk


class _Progress:
    """A one-line bar (a terminal's stderr): share of the file read, or rows read when its size is unknown."""

    def __init__(self):
        self.line = render.Progress(every_s=_PROGRESS_EVERY_S)

    def show(self, done: int, size: int | None, rows: int) -> None:
        if not self.line.due():
            return
        if size:
            share = min(1.0, done / size)
            self.line.show(f"{render.bar(share, empty=' ')} {share:4.0%}")
        else:
            self.line.show(_("{rows} readings").format(rows=rows))

    def clear(self) -> None:
        self.line.clear()


# --- option values ------------------------------------------------------------------------------------------
def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_INCIDENTS:
        raise argparse.ArgumentTypeError(_("{value!r} is not a whole number from 0 to {most}").format(
            value=text, most=MAX_INCIDENTS))
    return value


def _horizon(text: str) -> float:
    from drivers.options import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = 0.0
    if not 3600 <= seconds <= 366 * 86400:
        raise argparse.ArgumentTypeError(_("{value!r} is not a duration from 1h to 366d").format(value=text))
    return seconds


def _amount(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(_("{value!r} is not a positive number").format(value=text))
    return value


def _handle(args: argparse.Namespace) -> int:
    return run(args, config_path(args), render.warn)


#: The group, joined through the ``add_command`` pattern as a module outside the package would be.
register = command(add_command, _handle)
