"""The ``linli outbox`` command: what waits in the outbox, agent running or stopped, read-only.

``stats`` gives the file's figures (:mod:`buffer.inspect`) and, when the agent answers on
its control socket, what its ``health`` says: the agent also holds records only in memory
(read and not yet written, or written nowhere because the disk refuses), which no file
reader can see. ``peek N`` lists the next records the uplink would send, ``export`` streams
records to JSON lines or CSV. Nothing here writes to the outbox, its log or its lock; the
file is read as :mod:`buffer.inspect` explains. The outbox code loads only when the command runs:
``linli --help`` does not need it.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from edge.cli import render
from edge.cli.common import Subcommands, add_config_option, add_json_option, ask_agent, config_path, subcommands
from edge.errors import LinliError
from edge.exits import EX_CANTCREAT, EX_DATAERR, EX_IOERR, EX_NOINPUT, EX_OK
from edge.i18n import _

#: The CSV columns: the fields most records have, then the whole record as JSON.
CSV_FIELDS = ("seq", "priority", "ts", "time", "kind", "sensor", "quantity", "value", "unit", "quality", "alarm",
              "state", "record")
#: Seconds between two redraws of the progress bar.
PROGRESS_EVERY = 0.2

EPILOG = _("""The outbox file is only read, never written: the agent may run meanwhile, it is not
held up. Records the running agent holds only in memory are not in the file; stats
asks the agent for them too and says which figure comes from where.
examples:
  linli outbox stats --json
  linli outbox peek 5
  linli outbox export --since 2026-11-27T08:00 --format csv --out readings.csv
Exit status 0, 65 when the file is not an outbox, 66 when there is none, 74 when it cannot be read.
""")


class OutboxUnreadable(LinliError):
    """The outbox cannot be read; ``exit_code`` says why (66 none, 65 not an outbox, 74 unreadable)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def register(sub: Subcommands) -> None:
    p = sub.add_parser("outbox", help=_("what waits in the outbox (read-only, agent running or stopped)"),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = subcommands(p, "outbox_command")
    c = commands.add_parser("stats", help=_("depth by priority, oldest and newest, seqs, drops, size"))
    add_json_option(c)
    _common(c)
    c = commands.add_parser("peek", help=_("the next records the uplink would send, in send order"))
    c.add_argument("count", type=_positive, nargs="?", default=10, metavar="N",
                   help=_("how many (default: %(default)s)"))
    add_json_option(c, _("one JSON object per line"))
    _common(c)
    c = commands.add_parser("export", help=_("stream the stored records to JSON lines or CSV"))
    c.add_argument("--since", type=_time_ms, metavar="TIME",
                   help=_("only records from this time on: ISO 8601 (local time without an offset) or epoch ms"))
    c.add_argument("--until", type=_time_ms, metavar="TIME", help=_("only records up to this time"))
    c.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help=_("default: %(default)s"))
    c.add_argument("--out", metavar="FILE", help=_("write to FILE instead of standard output"))
    _common(c)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outbox", metavar="FILE", help=_("the outbox file (default: [buffer] path of the config)"))
    add_config_option(parser)
    parser.set_defaults(func=cmd_outbox)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(_("{value!r} is not a positive whole number").format(value=text))
    return int(text)


def _time_ms(text: str) -> int:
    """Epoch milliseconds, or ISO 8601 (a time without an offset is this machine's local time)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(_("{value!r} is not a time: use e.g. 2026-11-27T08:00 or epoch "
                                           "milliseconds").format(value=text)) from None
    return int(moment.astimezone().timestamp() * 1000)


# --- running ----------------------------------------------------------------------------------------------------
def cmd_outbox(args: argparse.Namespace) -> int:
    """Run ``args.outbox_command`` on ``--outbox`` or the configuration's outbox."""
    from edge.config import load_config

    path = args.outbox
    if path is None:
        path = load_config(config_path(args)).buffer.path
    if args.outbox_command == "stats":
        return _stats(path, args.json, lambda: ask_agent(args, "health"))
    if args.outbox_command == "peek":
        return _peek(path, args.count, args.json)
    return _export(path, args)


@contextmanager
def _opened(path: str) -> Iterator[Any]:
    """The outbox as a read-only view; its errors as :class:`OutboxUnreadable` with the fitting exit status."""
    from buffer.errors import ForeignFile, OutboxError
    from buffer.inspect import OutboxMissing, OutboxView

    try:
        with OutboxView(path) as view:
            yield view
    except OutboxMissing as exc:
        raise OutboxUnreadable(_("{error}: is the agent's [buffer] path this one? (--outbox FILE names "
                                 "another)").format(error=exc), EX_NOINPUT) from None
    except ForeignFile as exc:
        raise OutboxUnreadable(str(exc), EX_DATAERR) from None
    except OutboxError as exc:
        raise OutboxUnreadable(str(exc), EX_IOERR) from None


def _stats(path: str, as_json: bool, agent_health: Callable[[], dict]) -> int:
    with _opened(path) as view:
        figures = view.stats()
    try:
        health = agent_health()
        agent: dict[str, Any] = {"running": True, **_agent_outbox(health.get("outbox") or {})}
    except LinliError as exc:
        agent = {"running": False, "reason": str(exc)}
    if as_json:
        render.emit_json({"file": figures, "agent": agent})
        return EX_OK
    depth = figures["depth_by_priority"]
    render.out(_("outbox     {path}: {size} MiB on disk, {used} MiB in use").format(
        path=figures["path"], size=_mib(figures["file_bytes"] + figures["wal_bytes"]),
        used=_mib(figures["bytes_used"])))
    render.out(_("in file    {depth} records waiting: {alarm} alarms, {status} status, {telemetry} telemetry").format(
        depth=figures["depth"], **depth))
    if figures["depth"]:
        render.out(_("           oldest {oldest}, newest {newest}; seq {first} to {last}").format(
            oldest=_when(figures["oldest_ts"]), newest=_when(figures["newest_ts"]), first=figures["seq_first"],
            last=figures["seq_last"]))
    render.out(_("dropped    {total} records lost so far; {waiting} dropped records waiting to be sent").format(
        total=figures["dropped_total"], waiting=figures["dropped_records_waiting"]))
    # The one figure that says whether the file is the whole story: green when the agent answers, yellow if not.
    if agent["running"]:
        render.out(render.paint(_("agent      running: {depth} records waiting in all, {pending} of them only in "
                                  "its memory (not in the file yet)").format(
            depth=agent["depth"], pending=agent["pending_in_memory"]), render.GREEN))
    else:
        render.out(render.paint(_("agent      not answering ({reason}): the file is all there is").format(
            reason=agent["reason"]), render.YELLOW))
    return EX_OK


def _agent_outbox(outbox: dict) -> dict[str, Any]:
    """The agent's own figures: its depth counts the file and its memory; ``pending`` is memory alone."""
    names = {"0": "alarm", "1": "status", "2": "telemetry"}
    return {"depth": outbox.get("depth"), "pending_in_memory": outbox.get("pending"),
            "depth_by_priority": {names.get(k, k): v for k, v in (outbox.get("depth_by_priority") or {}).items()},
            "oldest_ts": outbox.get("oldest_ts"), "dropped_total": outbox.get("dropped_total"),
            "disk_full": outbox.get("disk_full"), "unavailable": outbox.get("unavailable")}


def _peek(path: str, count: int, as_json: bool) -> int:
    from itertools import islice

    from buffer.inspect import PRIORITY_NAMES

    with _opened(path) as view:
        rows = list(islice(view.records(), count))
    for row in rows:
        if as_json:
            render.emit_json(_jsonable(row, PRIORITY_NAMES))
        else:
            render.out(f"{row.seq:>10}  {PRIORITY_NAMES[row.priority]:<9}  {_when(row.body.get('ts')):<25}  "
                  + _summary(row.body))
    if not rows and not as_json:
        render.out(_("the outbox is empty: nothing waits to be sent"))
    return EX_OK


def _export(path: str, args: argparse.Namespace) -> int:
    from buffer.inspect import PRIORITY_NAMES

    if args.out is not None:
        _refuse_outbox_as_output(Path(args.out), Path(path))
    with _opened(path) as view:
        total = view.stats()["depth"]
        try:
            out = sys.stdout if args.out is None else open(args.out, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise OutboxUnreadable(_("cannot write {path}: {error}").format(
                path=args.out, error=exc.strerror), EX_CANTCREAT) from None
        try:
            written = _write(out, args.format, view.records(args.since, args.until), total, PRIORITY_NAMES)
        finally:
            if out is not sys.stdout:
                out.close()
    if args.out is not None:
        render.note(_("{count} records written to {path}").format(count=written, path=args.out))
    return EX_OK


def _refuse_outbox_as_output(out: Path, outbox: Path) -> None:
    taken = {outbox.resolve()} | {outbox.resolve().with_name(outbox.name + s) for s in ("-wal", "-shm", ".lock")}
    if out.resolve() in taken:
        raise OutboxUnreadable(_("{path} is the outbox or one of its files: export writes elsewhere").format(
            path=out), EX_CANTCREAT)


def _write(out: TextIO, form: str, rows: Iterable, total: int, names: dict[int, str]) -> int:
    """Write ``rows`` as they come (memory stays bounded); a progress bar on stderr when it is a terminal."""
    progress = render.Progress(every_s=PROGRESS_EVERY)
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore") if form == "csv" else None
    if writer is not None:
        writer.writeheader()
    written = 0
    for row in rows:
        record = _jsonable(row, names)
        if writer is None:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            body = row.body
            writer.writerow({**body, "seq": row.seq, "priority": record["priority"], "time": _when(body.get("ts")),
                             "record": json.dumps(body, ensure_ascii=False)})
        written += 1
        if progress.due():
            progress.show(_counted(written, total))
    progress.keep(_counted(written, total))
    return written


def _counted(count: int, total: int) -> str:
    """``[#####.....] 1200/5000``."""
    return f"{render.bar(count / max(total, 1))} {count}/{max(total, 1)}"


# --- rendering --------------------------------------------------------------------------------------------------
def _jsonable(row: Any, names: dict[int, str]) -> dict[str, Any]:
    return {"seq": row.seq, "priority": names[row.priority], "record": row.body}


def _summary(body: dict) -> str:
    """One line for a record: a reading's sensor, quantity and value; an alarm's name and state; else its JSON."""
    if "alarm" in body and "state" in body:
        return f"{body['alarm']} {body['state']}"
    if "sensor" in body and "value" in body:
        unit = f" {body['unit']}" if body.get("unit") else ""
        return f"{body['sensor']} {body.get('quantity') or ''} {body['value']}{unit}".replace("  ", " ")
    return json.dumps(body, ensure_ascii=False)[:100]


def _when(ts: Any) -> str:
    if not isinstance(ts, int):
        return "-"
    return datetime.datetime.fromtimestamp(ts / 1000).astimezone().isoformat(timespec="seconds")


def _mib(size: int) -> float:
    return round(size / 2**20, 1)
