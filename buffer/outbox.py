"""The durable outbox: records wait here, on SQLite, until the broker has acknowledged them.

One writer thread adds records, acknowledgements and state; they are group-
committed about once a second (an alarm commits at once). At commit every record
gets its ``seq`` — contiguous per outbox, never reused — and becomes safe (WAL,
``synchronous=FULL``). One reader thread fetches committed rows, alarms first, and
reports the seqs the broker acknowledged back to the writer, which deletes them.

When the file reaches ``max_bytes`` the oldest telemetry is dropped — never an
alarm or a status record — and the loss is itself stored as a ``dropped`` record.
A full disk does not crash the writer: records wait in memory (bounded) and are
retried. A corrupt file found at open is moved aside and a fresh outbox started,
with an alarm saying so.

>>> import tempfile, os
>>> with tempfile.TemporaryDirectory() as tmp, Outbox(os.path.join(tmp, "o.db")) as box:
...     box.add({"sensor": "meter", "value": 1.5, "ts": 1764201600123}, Priority.TELEMETRY)
...     box.add({"alarm": "meter/no-use", "state": "raised", "ts": 1764201600200}, Priority.ALARM)
...     [(row.seq, row.priority.name) for row in box.fetch({}, 10)]   # the alarm committed both
[(2, 'ALARM'), (1, 'TELEMETRY')]
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from buffer import store
from buffer.batch import Batch, PendingRecord
from buffer.errors import OutboxError, OutboxRecordError

__all__ = ["Outbox", "OutboxError", "OutboxRecordError", "Priority", "Row"]

log = logging.getLogger(__name__)

MIN_MAX_BYTES = 64 * 1024  # below this the empty schema alone is a sizeable part of the bound
BOUND_HEADROOM = 0.9  # a drop aims ~10 % under the bound so the next one is many commits away
# Bytes a row takes on disk beyond its JSON body (cell header, seq/priority/ts, the index entry):
# only used to estimate how many rows to drop; the result is checked against the real page count.
ROW_OVERHEAD = 40
CORRUPT_ALARM = "gateway/outbox-corrupt"


class Priority(enum.IntEnum):
    """Lower goes first: the reader hands out all alarms before any status, and status before telemetry."""

    ALARM = 0
    STATUS = 1
    TELEMETRY = 2


_PRIORITIES = frozenset(Priority)


@dataclass(frozen=True)
class Row:
    """A committed record: its ``seq``, its priority and the stored body (which never contains ``seq``)."""

    seq: int
    priority: int
    body: dict


# One encoder for all records (json.dumps with options builds a new one per call).
# allow_nan=False: NaN/Infinity are not JSON; the central side would refuse the message forever.
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _is_epoch_ms(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Outbox:
    """A durable, bounded, prioritised queue on one SQLite file (see the module docstring).

    Writer methods (``add``, ``ack``, ``set_state``, ``commit*``, ``seconds_until_due``,
    ``close``) belong to one thread; ``fetch``, ``get_state`` and ``stats`` to any one
    other thread, which gets its own connection. ``max_pending`` bounds the records
    held in memory while commits fail; ``_max_page_count`` caps the file in pages
    and exists only so tests can make the disk "full" (SQLite's ``max_page_count``).
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int = 64 * 2**20,
                 commit_interval: float = 1.0, commit_max_records: int = 2000,
                 clock: Callable[[], float] = time.monotonic, wall_ms: Callable[[], int] = _now_ms,
                 max_pending: int = 20_000, _max_page_count: int | None = None):
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
        if commit_interval < 0 or commit_max_records < 1 or max_pending < 1:
            raise ValueError("commit_interval must be >= 0, commit_max_records and max_pending >= 1")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.commit_interval = commit_interval
        self.commit_max_records = commit_max_records
        self.disk_full = False
        self.recovered_from_corruption: Path | None = None
        self._clock = clock
        self._wall_ms = wall_ms
        self._batch = Batch(max_pending)
        self._closed = False
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._open(_max_page_count)

    # --- opening ------------------------------------------------------------------------------
    def _open(self, max_page_count: int | None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"cannot create the outbox directory {self.path.parent}: {exc.strerror}") from None
        now = self._wall_ms()
        problem = store.integrity_problem(self.path)
        first_seq, salvaged = 1, None
        if problem is not None:
            salvaged = store.salvage_next_seq(self.path)
            # Nothing readable: seqs must still never repeat, and the clock in milliseconds is far
            # ahead of any count of records a gateway has made (see docs/decisions/0001).
            first_seq = salvaged if salvaged is not None else max(now, store.last_modified_ms(self.path))
            self.recovered_from_corruption = store.move_aside(self.path, now)
            log.warning("outbox %s is unusable (%s); moved aside to %s", self.path, problem,
                        self.recovered_from_corruption.name)
        self._conn = store.open_writer(self.path, first_seq=first_seq, created_ms=now,
                                       max_bytes=self.max_bytes, max_page_count=max_page_count)
        meta = dict(self._conn.execute("SELECT key, value FROM meta"))
        self._next_seq = meta["next_seq"]
        self._dropped_total = meta["dropped_total"]
        if problem is not None:
            self.add(self._corruption_alarm(problem, first_seq, salvaged is not None, now), Priority.ALARM)

    def _corruption_alarm(self, problem: str, first_seq: int, salvaged: bool, now: int) -> dict[str, Any]:
        moved = self.recovered_from_corruption.name
        origin = ("recovered from the damaged file" if salvaged
                  else "taken from the clock because the damaged file gave none")
        return {"kind": "alarm", "alarm": CORRUPT_ALARM, "state": "raised", "severity": "critical",
                "value": None, "limit": None, "ts": now,
                "message": f"the outbox was unusable ({problem}); it was moved aside to {moved} and a fresh "
                           f"one started at seq {first_seq} ({origin}); records not yet sent may be in it",
                "moved_to": moved}

    # --- writer side --------------------------------------------------------------------------
    def add(self, record: dict, priority: Priority) -> None:
        """Queue ``record`` for the next commit; an ALARM commits at once (with all that is pending).

        Raises :class:`OutboxRecordError` for a record that cannot be stored.
        """
        self._check_open()
        pending = self._serialise(record, priority)
        self._batch.add(pending, self._clock())
        if pending.priority == Priority.ALARM:
            self.commit()

    def ack(self, seqs: Iterable[int]) -> None:
        """Delete these rows (the broker has them) in the next commit; unknown seqs are ignored."""
        self._check_open()
        self._batch.ack({int(seq) for seq in seqs}, self._clock())

    def set_state(self, key: str, value: Any) -> None:
        """Persist a JSON-able ``value`` under ``key`` in the next commit (read back with ``get_state``)."""
        self._check_open()
        try:
            encoded = _dumps(value)
        except (TypeError, ValueError) as exc:
            raise OutboxRecordError(f"state {key!r} is not JSON-able: {exc}") from None
        self._batch.set_state(str(key), encoded, self._clock())

    def commit_due(self) -> bool:
        """True when work is pending and the interval has passed or enough records wait."""
        batch = self._batch
        if batch.since is None:  # set by every kind of pending work, cleared when none is left
            return False
        if not self.disk_full and batch.size() >= self.commit_max_records:
            return True
        return self._clock() - batch.since >= self.commit_interval

    def seconds_until_due(self) -> float | None:
        """How long the writer may wait before ``commit_due``; None when nothing is pending."""
        batch = self._batch
        if batch.since is None:
            return None
        # While the disk is full the count is always reached; only the interval paces the retries.
        if not self.disk_full and batch.size() >= self.commit_max_records:
            return 0.0
        return max(0.0, batch.since + self.commit_interval - self._clock())

    def commit(self) -> list[int]:
        """Commit all pending work in one transaction; return the seqs given to the rows written.

        On a full disk this never raises: see :meth:`_commit_on_full_disk`. Any other
        database failure raises :class:`OutboxError` and keeps the pending work.
        """
        self._check_open()
        if not self._batch.has_work():
            return []
        try:
            assigned = self._write(self._batch.records)
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)
            return self._commit_on_full_disk()
        if self.disk_full:
            log.warning("the outbox %s can be written again", self.path)
        self.disk_full = False
        return assigned

    def _commit_on_full_disk(self) -> list[int]:
        """Make room and retry; failing that, save at least the alarms; keep the rest for later."""
        if not self.disk_full:
            log.error("no space left for the outbox %s; %d records wait in memory",
                      self.path, len(self._batch.records))
        self.disk_full = True
        assigned: list[int] = []
        try:
            assigned += self._make_room()
            assigned += self._write(self._batch.records)
            self.disk_full = False
            return assigned
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)
        urgent = self._batch.urgent_records()
        if urgent:
            try:
                assigned += self._write(urgent)
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc)
        self._batch.retry_later(self._clock())
        return assigned

    def _fail(self, exc: BaseException) -> None:
        """Roll back after a failed write; re-raise as OutboxError unless the disk is full."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite may already have rolled back; the next BEGIN reports a real problem
        if not store.is_disk_full(exc):
            self._batch.retry_later(self._clock())
            raise OutboxError(f"cannot commit to the outbox {self.path}: {exc}") from exc

    def _write(self, records: list[PendingRecord]) -> list[int]:
        """One transaction: acks, the in-memory drop tally, ``records``, state, the size bound, meta."""
        conn, batch = self._conn, self._batch
        seq, dropped_total = self._next_seq, self._dropped_total
        assigned: list[int] = []
        conn.execute("BEGIN IMMEDIATE")
        self._delete_acked()
        if batch.shed.count:
            shed = batch.shed
            # The shed records never had seqs; they get the range they would have had, so the
            # central side sees a gap explained like any other drop.
            self._insert_dropped(seq + shed.count, shed.count, seq, seq + shed.count - 1, shed.ts_from, shed.ts_to)
            assigned.append(seq + shed.count)
            seq += shed.count + 1
            dropped_total += shed.count
        conn.executemany("INSERT INTO outbox (seq, priority, ts, body) VALUES (?, ?, ?, ?)",
                         [(seq + i, r.priority, r.ts, r.body) for i, r in enumerate(records)])
        assigned += range(seq, seq + len(records))
        seq += len(records)
        if batch.state:
            conn.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", batch.state.items())
        while (used := store.used_bytes(conn)) > self.max_bytes:
            count = self._drop_oldest_telemetry(used - int(self.max_bytes * BOUND_HEADROOM), seq)
            if not count:
                break  # only alarms and status rows left: exceed the bound rather than lose an alarm
            assigned.append(seq)
            seq += 1
            dropped_total += count
        self._save_meta(seq, dropped_total)
        conn.execute("COMMIT")
        self._next_seq, self._dropped_total = seq, dropped_total
        batch.committed(records, self._clock())
        return assigned

    def _make_room(self) -> list[int]:
        """Full disk: apply pending acks and drop old telemetry until pending records fit in free pages.

        The disk has no room, so the only room is the file's own freelist. Drops at
        least a tenth of the used bytes, like the size bound, so a disk that stays
        full costs a dropped record now and then, not one per commit.
        """
        conn, batch = self._conn, self._batch
        seq = self._next_seq
        conn.execute("BEGIN IMMEDIATE")
        self._delete_acked()
        need = 2 * (batch.body_bytes + ROW_OVERHEAD * len(batch.records)) - store.free_bytes(conn)
        count = 0
        if need > 0:
            count = self._drop_oldest_telemetry(max(need, store.used_bytes(conn) // 10), seq)
        if count:
            seq += 1
        self._save_meta(seq, self._dropped_total + count)
        conn.execute("COMMIT")
        assigned = list(range(self._next_seq, seq))
        self._next_seq, self._dropped_total = seq, self._dropped_total + count
        batch.acks.clear()
        return assigned

    def _delete_acked(self) -> None:
        if self._batch.acks:
            self._conn.executemany("DELETE FROM outbox WHERE seq = ?", ((s,) for s in sorted(self._batch.acks)))

    def _drop_oldest_telemetry(self, bytes_wanted: int, dropped_seq: int) -> int:
        """Delete the oldest telemetry rows worth about ``bytes_wanted`` and store a dropped record at
        ``dropped_seq``. Returns how many rows went (0: there was no telemetry)."""
        conn = self._conn
        cutoff, freed = None, 0
        cursor = conn.execute("SELECT seq, length(body) FROM outbox WHERE priority = ? ORDER BY seq",
                              (Priority.TELEMETRY,))
        for seq, length in cursor:
            cutoff, freed = seq, freed + length + ROW_OVERHEAD
            if freed >= bytes_wanted:
                break
        cursor.close()
        if cutoff is None:
            return 0
        count, seq_from, seq_to, ts_from, ts_to = conn.execute(
            "SELECT count(*), min(seq), max(seq), min(ts), max(ts) FROM outbox WHERE priority = ? AND seq <= ?",
            (Priority.TELEMETRY, cutoff)).fetchone()
        conn.execute("DELETE FROM outbox WHERE priority = ? AND seq <= ?", (Priority.TELEMETRY, cutoff))
        self._insert_dropped(dropped_seq, count, seq_from, seq_to, ts_from, ts_to)
        log.warning("outbox %s: dropped the %d oldest telemetry records (seq %d..%d) to make room",
                    self.path, count, seq_from, seq_to)
        return count

    def _insert_dropped(self, seq: int, count: int, seq_from: int, seq_to: int,
                        ts_from: int | None, ts_to: int | None) -> None:
        body = {"kind": "dropped", "count": count, "seq_from": seq_from, "seq_to": seq_to,
                "ts_from": ts_from, "ts_to": ts_to}
        self._conn.execute("INSERT INTO outbox (seq, priority, ts, body) VALUES (?, ?, NULL, ?)",
                           (seq, Priority.STATUS, _dumps(body)))

    def _save_meta(self, next_seq: int, dropped_total: int) -> None:
        self._conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                               [(next_seq, "next_seq"), (dropped_total, "dropped_total")])

    @staticmethod
    def _serialise(record: dict, priority: Priority) -> PendingRecord:
        if priority not in _PRIORITIES or isinstance(priority, bool):
            raise OutboxRecordError(f"unknown priority {priority!r}; use Priority.ALARM, STATUS or TELEMETRY")
        if not isinstance(record, dict):
            raise OutboxRecordError(f"a record must be a dict, not {type(record).__name__}")
        if "seq" in record:
            raise OutboxRecordError("a record must not carry 'seq': the outbox assigns it at commit")
        ts = record.get("ts")
        if not _is_epoch_ms(ts):
            if priority == Priority.TELEMETRY:
                raise OutboxRecordError(f"a telemetry record needs 'ts' in integer epoch milliseconds, got {ts!r}")
            ts = None
        try:
            body = _dumps(record)
        except (TypeError, ValueError) as exc:
            raise OutboxRecordError(f"record is not JSON-able: {exc}") from None
        return PendingRecord(int(priority), ts, body)

    # --- reader side --------------------------------------------------------------------------
    def fetch(self, after: dict[int, int], limit: int) -> list[Row]:
        """Up to ``limit`` committed rows with ``seq > after.get(priority, 0)``, alarms first, then by seq."""
        rows: list[Row] = []
        with self._snapshot() as conn:
            for priority in Priority:
                if len(rows) >= limit:
                    break
                cursor = conn.execute(
                    "SELECT seq, body FROM outbox WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (int(priority), after.get(priority, 0), limit - len(rows)))
                rows += [Row(seq, priority, json.loads(body)) for seq, body in cursor]
        return rows

    def get_state(self, key: str, default: Any = None) -> Any:
        """The committed value stored under ``key``, or ``default``."""
        with self._snapshot() as conn:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def stats(self) -> dict[str, Any]:
        """Depth, size and loss figures for health reports (committed state, plus ``pending`` in memory)."""
        by_priority = {str(int(p)): 0 for p in Priority}
        with self._snapshot() as conn:
            for priority, count in conn.execute("SELECT priority, count(*) FROM outbox GROUP BY priority"):
                by_priority[str(priority)] = count
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            # The first row of each priority (by seq) via the index, instead of scanning every ts.
            firsts = [row[0] for p in Priority for row in conn.execute(
                "SELECT ts FROM outbox WHERE priority = ? AND ts IS NOT NULL ORDER BY seq LIMIT 1", (int(p),))]
            used = store.used_bytes(conn)
        return {"depth": sum(by_priority.values()), "depth_by_priority": by_priority, "bytes_used": used,
                "max_bytes": self.max_bytes, "next_seq": meta["next_seq"], "dropped_total": meta["dropped_total"],
                "oldest_ts": min(firsts) if firsts else None, "disk_full": self.disk_full,
                "pending": len(self._batch.records)}

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """This thread's reader connection inside one read transaction (one consistent view)."""
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from exc

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = store.open_reader(self.path)
            with self._readers_lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    # --- life cycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is pending and close every connection. Idempotent."""
        if self._closed:
            return
        try:
            self.commit()
            if self._batch.has_work():
                log.error("outbox %s closed with %d records not committed: no space left on the disk",
                          self.path, len(self._batch.records))
        finally:
            self._closed = True
            with self._readers_lock:
                for conn in self._readers:
                    conn.close()
                self._readers.clear()
            self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"the outbox {self.path} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
