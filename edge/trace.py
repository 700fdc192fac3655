"""Reading a recorded trace for ``linli replay``: CSV rows in, checked reading records out.

A trace is CSV with the header ``ts,sensor,quantity,value`` and optionally
``quality`` and ``unit`` columns, in any order. ``ts`` is ISO 8601 with a UTC
offset or epoch milliseconds; ``value`` is a number, ``true``/``false``, or
empty for a ``bad`` reading. Lines starting with ``#`` and blank lines are
skipped. Rows must be in time order.

>>> rows = read_trace(["ts,sensor,quantity,value", "1764201600000,bed-1,presence,false"])
>>> next(rows)["value"]
False
>>> format_ts(1764201600000, datetime.timezone(datetime.timedelta(hours=8)))
'2025-11-27T08:00:00+08:00'
"""

from __future__ import annotations

import csv
import datetime
import math
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from edge.errors import LinliError
from edge.i18n import _

EX_DATAERR, EX_NOINPUT, EX_IOERR = 65, 66, 74

REQUIRED_COLUMNS = ("ts", "sensor", "quantity", "value")
OPTIONAL_COLUMNS = ("quality", "unit")
QUALITIES = ("good", "uncertain", "bad")

#: Epoch milliseconds below this (March 1973) are almost surely epoch *seconds*: refuse rather than replay 1970.
_EARLIEST_MS = 100_000_000_000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class TraceError(LinliError):
    """The trace cannot be replayed: a bad header, value or time, or rows out of time order."""

    exit_code = EX_DATAERR


class TraceUnreadable(LinliError):
    """The trace file is missing or cannot be read; ``exit_code`` is 66 (no input) or 74 (I/O error)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# --- reading a trace -------------------------------------------------------------------------------------
def open_trace(path: str) -> TextIO:
    """Open ``path`` as text (a byte-order mark is skipped); raise :class:`TraceUnreadable` when it cannot be."""
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise TraceUnreadable(_('no such file "{path}"').format(path=path), EX_NOINPUT) from None
    except IsADirectoryError:
        raise TraceUnreadable(_('expected a file, "{path}" is a directory').format(path=path), EX_NOINPUT) from None
    except PermissionError:
        raise TraceUnreadable(_('cannot read "{path}": permission denied').format(path=path), EX_NOINPUT) from None
    except OSError as exc:
        raise TraceUnreadable(_('cannot read "{path}": {reason}').format(path=path, reason=exc.strerror or exc),
                              EX_IOERR) from None


def read_trace(lines: Iterable[str], name: str = "trace") -> Iterator[dict[str, Any]]:
    """Yield one reading record per data row of a trace, checking values and time order as it goes.

    Errors name ``name`` and the line: ``trace.csv line 7: …``.
    """
    rows = _rows(lines, name)
    columns = _header(rows, name)
    previous_ts: int | None = None
    previous_line = 0
    for line, row in rows:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        where = _("{name} line {line}").format(name=name, line=line)
        if len(row) != len(columns):
            raise TraceError(_("{where}: expected {expected} fields like the header, got {count}").format(
                where=where, expected=len(columns), count=len(row)))
        fields = dict(zip(columns, (cell.strip() for cell in row), strict=True))
        record = _reading(fields, where)
        if previous_ts is not None and record["ts"] < previous_ts:
            raise TraceError(_("{where}: rows must be in time order, but {ts} is earlier than {previous} "
                               "on line {previous_line}").format(
                where=where, ts=fields["ts"], previous=plain_utc(previous_ts), previous_line=previous_line))
        previous_ts, previous_line = record["ts"], line
        yield record


def _rows(lines: Iterable[str], name: str) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of each CSV row; a row the csv module refuses (a field over its limit) is a TraceError."""
    source = _CommentCounter(lines)
    reader = csv.reader(source)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TraceError(_("{name} line {line}: not readable as CSV ({reason})").format(
                name=name, line=reader.line_num + source.skipped, reason=exc)) from None
        # csv counts the lines it was given; count the comment lines dropped before it back in.
        yield reader.line_num + source.skipped, row


def _header(rows: Iterator[tuple[int, list[str]]], name: str) -> list[str]:
    try:
        _line, header = next(rows)
    except StopIteration:
        raise TraceError(_("{name} is empty; expected a header line \"ts,sensor,quantity,value\"").format(
            name=name)) from None
    columns = [cell.strip().lower() for cell in header]
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    unknown = [column for column in columns if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    repeated = sorted({column for column in columns if columns.count(column) > 1})
    if missing or unknown or repeated:
        problems = []
        if missing:
            problems.append(_("missing {columns}").format(columns=", ".join(missing)))
        if unknown:
            problems.append(_("unknown {columns}").format(columns=", ".join(unknown)))
        if repeated:
            problems.append(_("repeated {columns}").format(columns=", ".join(repeated)))
        raise TraceError(_("{name} line 1: bad header ({problems}); expected the columns "
                           "ts,sensor,quantity,value and optionally quality, unit").format(
            name=name, problems="; ".join(problems)))
    return columns


def _reading(fields: dict[str, str], where: str) -> dict[str, Any]:
    for column in ("sensor", "quantity"):
        if not fields[column]:
            raise TraceError(_("{where}: {column} is empty").format(where=where, column=column))
    quality = fields.get("quality") or "good"
    if quality not in QUALITIES:
        raise TraceError(_("{where}: quality must be good, uncertain or bad, got \"{value}\"").format(
            where=where, value=quality))
    record: dict[str, Any] = {
        "kind": "reading",
        "sensor": fields["sensor"],
        "quantity": fields["quantity"],
        "value": _value(fields["value"], quality, where),
        "quality": quality,
        "ts": parse_ts(fields["ts"], where),
    }
    if fields.get("unit"):
        record["unit"] = fields["unit"]
    return record


def _value(text: str, quality: str, where: str) -> float | bool | None:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if not text:
        if quality == "bad":  # a failed read has no value, exactly as the agent records it
            return None
        raise TraceError(_("{where}: value is empty; only a reading of quality bad may have no value").format(
            where=where))
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise TraceError(_("{where}: value must be a number, true or false, got \"{value}\"").format(
            where=where, value=text))
    return number


def parse_ts(text: str, where: str = "ts") -> int:
    """Epoch milliseconds from ``text``: digits (epoch ms) or ISO 8601 with a UTC offset.

    >>> parse_ts("2026-01-05T08:00:00+08:00")
    1767571200000
    >>> parse_ts("1767571200000")
    1767571200000
    """
    if text.isdigit():
        value = int(text)
        if value < _EARLIEST_MS:
            raise TraceError(_("{where}: ts {value} would be before 1973 as epoch milliseconds; "
                               "epoch seconds must be multiplied by 1000").format(where=where, value=text))
        return value
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise TraceError(_("{where}: ts must be ISO 8601 with a UTC offset (2026-01-05T08:00:00+08:00) "
                           "or epoch milliseconds, got \"{value}\"").format(where=where, value=text)) from None
    if moment.utcoffset() is None:
        raise TraceError(_("{where}: ts \"{value}\" has no UTC offset; add one like +08:00 or Z").format(
            where=where, value=text))
    return (moment - _EPOCH) // datetime.timedelta(milliseconds=1)


def plain_utc(ts: int) -> str:
    return format_ts(ts, datetime.timezone.utc)


class _CommentCounter:
    """Lines of a file without ``#`` comments, counting what it dropped so line numbers stay the file's own."""

    def __init__(self, lines: Iterable[str]):
        self._lines = iter(lines)
        self.skipped = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            if line.startswith("#"):
                self.skipped += 1
                continue
            yield line


# --- time ---------------------------------------------------------------------------------------------
def format_ts(ts: int, zone: datetime.tzinfo) -> str:
    """ISO 8601 in ``zone`` with its offset; milliseconds only when there are some."""
    moment = (_EPOCH + datetime.timedelta(milliseconds=ts)).astimezone(zone)
    return moment.isoformat(timespec="milliseconds" if ts % 1000 else "seconds")
