"""Reading a recorded trace for ``linli replay``: a file read in chunks in, checked reading records out.

A trace is CSV with the header ``ts,sensor,quantity,value`` and optionally
``quality`` and ``unit`` columns, in any order. ``ts`` is ISO 8601 with a UTC
offset or epoch milliseconds; ``value`` is a number, ``true``/``false``, or
empty for a ``bad`` reading. Lines starting with ``#`` and blank lines are
skipped. Rows must be in time order, one row per line.

Nothing here holds more than one line: a trace of any length, or one arriving
slowly through a pipe, is read as it comes, and a line longer than
:data:`MAX_LINE_BYTES` is refused once that much of it has been read.

>>> rows = read_trace(["ts,sensor,quantity,value", "1764201600000,bed-1,presence,false"])
>>> next(rows)["value"]
False
>>> format_ts(1764201600000, datetime.timezone(datetime.timedelta(hours=8)))
'2025-11-27T08:00:00+08:00'
"""

from __future__ import annotations

import collections
import csv
import datetime
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from edge.errors import LinliError
from edge.exits import EX_DATAERR, EX_IOERR, EX_NOINPUT
from edge.i18n import _


REQUIRED_COLUMNS = ("ts", "sensor", "quantity", "value")
OPTIONAL_COLUMNS = ("quality", "unit")
QUALITIES = ("good", "uncertain", "bad")

#: A row is a few dozen bytes; a line this long is not a row (a file that is not a trace, a lost newline).
MAX_LINE_BYTES = 1024 * 1024
#: Bytes asked of the file at a time; a pipe answers with what it has, so rows are replayed as they arrive.
_CHUNK_BYTES = 64 * 1024
#: A field quoted in a message is cut to this many characters: enough to recognise it, never a screenful.
_SHOWN_CHARS = 40

#: Epoch milliseconds below this (March 1973) are almost surely epoch *seconds*: refuse rather than replay 1970.
#: No meter recorded a reading before it either, nor after _LATEST_MS (9000-01-01), beyond which a time plus a
#: rule's timer could leave the calendar that prints it.
_EARLIEST_MS = 100_000_000_000
_LATEST_MS = 221_845_392_000_000
_LATEST_DIGITS = len(str(_LATEST_MS))
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class TraceError(LinliError):
    """The trace cannot be replayed: a bad line, header, value or time, or rows out of time order."""

    exit_code = EX_DATAERR


class TraceUnreadable(LinliError):
    """The trace file is missing or cannot be read; ``exit_code`` is 66 (no input) or 74 (I/O error)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# --- the file ------------------------------------------------------------------------------------------
def open_trace(path: str) -> BinaryIO:
    """Open ``path`` for :func:`trace_lines`; raise :class:`TraceUnreadable` when it cannot be.

    66 when there is no file to read at ``path``, 74 when there is one that cannot be read.
    """
    try:
        # Unbuffered: each read returns what a pipe holds now instead of waiting for a full buffer.
        return open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise TraceUnreadable(_('no such file "{path}"').format(path=path), EX_NOINPUT) from None
    except IsADirectoryError:
        raise TraceUnreadable(_('expected a file, "{path}" is a directory').format(path=path), EX_NOINPUT) from None
    except PermissionError:
        raise TraceUnreadable(_('cannot read "{path}": permission denied').format(path=path), EX_IOERR) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None


def trace_lines(file: BinaryIO, path: str) -> Iterator[str]:
    """The lines of ``file`` as text without their line ends, read in chunks; a leading byte-order mark is dropped.

    A byte that is not UTF-8 is reported on its line; a line over :data:`MAX_LINE_BYTES`
    is refused without reading the rest of it.
    """
    name = os.path.basename(path)
    pending = b""
    number = 0
    while chunk := _read(file, path):
        *lines, pending = (pending + chunk).split(b"\n")
        yield from _chunk_lines(lines, number, name)
        number += len(lines)
        if len(pending) > MAX_LINE_BYTES:
            raise _too_long(name, number + 1)
    if pending:
        yield _decoded(pending, number + 1, name)


def _chunk_lines(lines: list[bytes], before: int, name: str) -> Iterator[str]:
    """``lines``, which follow line ``before``, decoded: all at once when they are all good, as nearly always."""
    if before and lines and max(map(len, lines)) <= MAX_LINE_BYTES:  # not the first: it may start with a BOM
        try:
            texts = b"\n".join(lines).decode("utf-8")
        except UnicodeDecodeError:
            pass  # decoded again a line at a time below, to say which line is not UTF-8
        else:
            yield from texts.split("\n")
            return
    for number, line in enumerate(lines, start=before + 1):
        yield _decoded(line, number, name)


def _read(file: BinaryIO, path: str) -> bytes:
    try:
        return file.read(_CHUNK_BYTES)
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _too_long(name: str, line: int) -> TraceError:
    return TraceError(_("{name} line {line}: longer than {limit} bytes, so not a row of a trace; "
                        "is it the right file?").format(name=name, line=line, limit=MAX_LINE_BYTES))


def _unreadable(path: str, exc: OSError) -> TraceUnreadable:
    return TraceUnreadable(_('cannot read "{path}": {reason}').format(path=path, reason=exc.strerror or exc),
                           EX_IOERR)


def _decoded(line: bytes, number: int, name: str) -> str:
    if len(line) > MAX_LINE_BYTES:  # a line that ended within the chunk that took it over the limit
        raise _too_long(name, number)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(_("{name} line {line}: not UTF-8 text (byte {position} of the line); "
                           "save the trace as UTF-8").format(name=name, line=number, position=exc.start + 1)) from None
    return text.removeprefix("\ufeff") if number == 1 else text  # the byte-order mark some editors put first


# --- rows -----------------------------------------------------------------------------------------------
def read_trace(lines: Iterable[str], name: str = "trace") -> Iterator[dict[str, Any]]:
    """Yield one reading record per data row of a trace, checking values and time order as it goes.

    Errors name ``name``, the line and the column: ``trace.csv line 7: value must be …``.
    """
    rows = _rows(lines, name)
    columns = _header(rows, name)
    at = _Columns(columns)
    previous_ts: int | None = None
    previous_line = 0
    for line, row in rows:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(columns):
            raise TraceError(_("{where}: expected {expected} fields like the header ({columns}), got {count}").format(
                where=_where(name, line), expected=len(columns), columns=",".join(columns), count=len(row)))
        fields = list(map(str.strip, row))
        record = _reading(fields, at, name, line)
        if previous_ts is not None and record["ts"] < previous_ts:
            raise TraceError(_("{where}: rows must be in time order, but {ts} is earlier than {previous} "
                               "on line {previous_line}").format(
                where=_where(name, line), ts=fields[at.ts], previous=plain_utc(previous_ts),
                previous_line=previous_line))
        previous_ts, previous_line = record["ts"], line
        yield record


def _where(name: str, line: int) -> str:
    return _("{name} line {line}").format(name=name, line=line)


def _rows(lines: Iterable[str], name: str) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of each CSV row, comments left out; a row the csv module refuses is a TraceError.

    A line without a quote or a carriage return inside (all a meter writes) is split
    at its commas, which is what the csv module makes of it, only without its cost;
    any other line goes through the csv module, on its own since a row is one line.
    """
    longest = csv.field_size_limit()
    number = 0
    for line in lines:
        number += 1
        if line.startswith("#"):
            continue
        plain = line
        if "\r" in line or "\n" in line:  # a CRLF's \r, or the \n of lines read from a text file: csv ends rows there
            plain = line.removesuffix("\n").removesuffix("\r")
        if not plain:
            yield number, []
        elif '"' in plain or "\r" in plain or "\n" in plain or len(plain) > longest:
            yield number, _csv_row(line, number, name)
        else:
            yield number, plain.split(",")


def _csv_row(line: str, number: int, name: str) -> list[str]:
    def only_this_line() -> Iterator[str]:
        yield line
        # The csv module asks for another line only while a quoted field is open: it would swallow the next rows.
        raise TraceError(_("{name} line {line}: a quoted field is not closed on its line; "
                           "is a \" missing?").format(name=name, line=number))

    try:
        return next(csv.reader(only_this_line(), strict=True))
    except csv.Error as exc:
        raise TraceError(_("{name} line {line}: not readable as CSV ({reason})").format(
            name=name, line=number, reason=exc)) from None


def _header(rows: Iterator[tuple[int, list[str]]], name: str) -> list[str]:
    try:
        line, header = next(rows)
    except StopIteration:
        raise TraceError(_("{name} is empty; expected a header line \"ts,sensor,quantity,value\"").format(
            name=name)) from None
    columns = [cell.strip().lower() for cell in header]
    counts = collections.Counter(columns)  # a line of a million commas is a million columns: no quadratic look
    missing = [column for column in REQUIRED_COLUMNS if column not in counts]
    unknown = [column for column in counts if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    repeated = sorted(column for column, count in counts.items() if count > 1)
    if missing or unknown or repeated:
        problems = []
        if missing:
            problems.append(_("missing {columns}").format(columns=", ".join(missing)))
        if unknown:
            problems.append(_("unknown {columns}").format(columns=_listed(unknown)))
        if repeated:
            problems.append(_("repeated {columns}").format(columns=_listed(repeated)))
        raise TraceError(_("{name} line {line}: bad header ({problems}); expected the columns "
                           "ts,sensor,quantity,value and optionally quality, unit").format(
            name=name, line=line, problems="; ".join(problems)))
    return columns


def _listed(names: list[str], most: int = 5) -> str:
    shown = [shown_field(name) or '""' for name in names[:most]]
    return ", ".join(shown + ["…"] if len(names) > most else shown)


class _Columns:
    """Where each column is in a row of the trace whose header is ``columns``; ``None`` for an absent optional one."""

    def __init__(self, columns: list[str]):
        self.ts, self.sensor, self.quantity, self.value = (columns.index(column) for column in REQUIRED_COLUMNS)
        self.quality, self.unit = (columns.index(column) if column in columns else None
                                   for column in OPTIONAL_COLUMNS)


def _reading(fields: list[str], at: _Columns, name: str, line: int) -> dict[str, Any]:
    sensor, quantity = fields[at.sensor], fields[at.quantity]
    if not sensor or not quantity:
        raise TraceError(_("{where}: {column} is empty").format(
            where=_where(name, line), column="sensor" if not sensor else "quantity"))
    quality = (fields[at.quality] if at.quality is not None else "") or "good"
    if quality not in QUALITIES:
        raise TraceError(_("{where}: quality must be good, uncertain or bad, got \"{value}\"").format(
            where=_where(name, line), value=shown_field(quality)))
    record: dict[str, Any] = {
        "kind": "reading",
        "sensor": sensor,
        "quantity": quantity,
        "value": _value(fields[at.value], quality, name, line),
        "quality": quality,
        "ts": _row_ts(fields[at.ts], name, line),
    }
    if at.unit is not None and fields[at.unit]:
        record["unit"] = fields[at.unit]
    return record


def _value(text: str, quality: str, name: str, line: int) -> float | bool | None:
    try:
        number = float(text)  # most values are numbers: try that first
    except ValueError:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if not text:
            if quality == "bad":  # a failed read has no value, exactly as the agent records it
                return None
            raise TraceError(_("{where}: value is empty; only a reading of quality bad may have no value").format(
                where=_where(name, line))) from None
        number = math.nan
    if not math.isfinite(number):
        raise TraceError(_("{where}: value must be a number, true or false, got \"{value}\"").format(
            where=_where(name, line), value=shown_field(text)))
    return number


def parse_ts(text: str, where: str = "ts") -> int:
    """Epoch milliseconds from ``text``: digits (epoch ms) or ISO 8601 with a UTC offset.

    >>> parse_ts("2026-01-05T08:00:00+08:00")
    1767571200000
    >>> parse_ts("1767571200000")
    1767571200000
    """
    try:
        return _epoch_ms(text)
    except _BadTs as bad:
        raise TraceError(bad.message(where)) from None


def _row_ts(text: str, name: str, line: int) -> int:
    try:
        return _epoch_ms(text)
    except _BadTs as bad:  # the row's place is put into words only for a message
        raise TraceError(bad.message(_where(name, line))) from None


class _BadTs(Exception):
    """``text`` is not a time: the message saying why, given where the text was."""

    def __init__(self, template: str, value: str):
        super().__init__(template)
        self.template, self.value = template, value

    def message(self, where: str) -> str:
        return self.template.format(where=where, value=self.value)


def _epoch_ms(text: str) -> int:
    if text.isascii() and text.isdigit():
        # int() of thousands of digits is refused by Python itself; no time has that many.
        value = int(text) if len(text) <= _LATEST_DIGITS else _LATEST_MS + 1
        if value < _EARLIEST_MS:
            raise _BadTs(_("{where}: ts {value} would be before 1973 as epoch milliseconds; "
                           "epoch seconds must be multiplied by 1000"), text)
    else:
        value = _iso_ms(text)
    if not _EARLIEST_MS <= value <= _LATEST_MS:
        raise _BadTs(_("{where}: ts \"{value}\" is not between 1973 and 9000, so not a time a meter "
                       "recorded"), shown_field(text))
    return value


def _iso_ms(text: str) -> int:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise _BadTs(_("{where}: ts must be ISO 8601 with a UTC offset (2026-01-05T08:00:00+08:00) "
                       "or epoch milliseconds, got \"{value}\""), shown_field(text)) from None
    if moment.utcoffset() is None:
        raise _BadTs(_("{where}: ts \"{value}\" has no UTC offset; add one like +08:00 or Z"), shown_field(text))
    # The whole days and seconds since 1970, then the milliseconds, rounded down as timedelta // 1 ms rounds.
    since = moment - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


def shown_field(text: str) -> str:
    r"""A field from the trace as a message quotes it: control characters escaped, long ones cut.

    >>> shown_field("ok\x00") + " " + shown_field("7" * 100)
    'ok\\x00 7777777777777777777777777777777777777777…'
    """
    cut = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in cut)


# --- time ---------------------------------------------------------------------------------------------
def format_ts(ts: int, zone: datetime.tzinfo) -> str:
    """ISO 8601 in ``zone`` with its offset; milliseconds only when there are some."""
    moment = (_EPOCH + datetime.timedelta(milliseconds=ts)).astimezone(zone)
    return moment.isoformat(timespec="milliseconds" if ts % 1000 else "seconds")


def plain_utc(ts: int) -> str:
    return format_ts(ts, datetime.timezone.utc)
