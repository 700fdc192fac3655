"""The outbox file as its one writer changes it: each method is one SQLite transaction, whole or not at all.

What to write and when is decided in :mod:`buffer.outbox`; this module only knows
the tables (alarm and status rows, telemetry chunks, state, meta) and the size
bound: past ``max_bytes`` the oldest chunks go, and a ``dropped`` record says so.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from buffer import chunks, store
from buffer.records import PendingRecord, dumps

log = logging.getLogger("buffer.outbox")

STATUS = 1   # Priority.STATUS: where dropped records go
BOUND_HEADROOM = 0.9  # a drop aims ~10 % under the bound so the next one is many commits away


class Meta(NamedTuple):
    """The ``meta`` table: the first seq not reserved, the lowest that may live only in memory, the loss tally."""

    reserved_to: int
    unsaved_from: int
    dropped_total: int


class Drop(NamedTuple):
    """Chunks dropped at the size bound: the dropped record's seq, how many records, the chunks' first seqs."""

    seq: int
    count: int
    firsts: list[int]


Records = list[tuple[int, PendingRecord]]


class FileWriter:
    """The writer's connection to the outbox file at ``path`` (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, max_bytes: int):
        self.conn = conn
        self.path = path
        self.max_bytes = max_bytes

    def write(self, rows: Records, telemetry: Records, row_acks: Iterable[int], chunk_acks: Iterable[int],
              state: dict[str, str], take_seq: Callable[[], int],
              meta_for: Callable[[list[Drop]], Meta | None]) -> tuple[list[Drop], Meta | None]:
        """Deletions, alarm/status ``rows``, ``telemetry`` as one chunk, ``state``, the bound, then meta.

        ``take_seq`` numbers a dropped record; ``meta_for(drops)`` says what meta to write, if anything.
        """
        conn = self.conn
        with self._transaction():
            self._delete(row_acks, chunk_acks)
            if rows:
                conn.executemany("INSERT INTO outbox (seq, priority, ts, body) VALUES (?, ?, ?, ?)",
                                 [(seq, r.priority, r.ts, r.body) for seq, r in rows])
            if telemetry:
                stamps = [r.ts for _, r in telemetry if r.ts is not None]
                conn.execute("INSERT INTO chunk (first_seq, last_seq, count, ts_from, ts_to, data) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (telemetry[0][0], telemetry[-1][0], len(telemetry), min(stamps, default=None),
                              max(stamps, default=None), chunks.encode((seq, r.body) for seq, r in telemetry)))
            if state:
                conn.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", state.items())
            drops: list[Drop] = []
            newest = telemetry[0][0] if telemetry else None
            while (used := store.used_bytes(conn)) > self.max_bytes:
                drop = self._drop_oldest_chunks(used - int(self.max_bytes * BOUND_HEADROOM), newest, take_seq)
                if drop is None:
                    break  # only alarms and status rows (and what this commit adds) left: exceed the bound
                drops.append(drop)
            meta = meta_for(drops)
            if meta is not None:
                self._save_meta(meta)
        return drops, meta

    def make_room(self, need: int, row_acks: Iterable[int], chunk_acks: Iterable[int],
                  take_seq: Callable[[], int], meta_for: Callable[[list[Drop]], Meta]) -> list[Drop]:
        """Full disk: apply pending deletions and drop old chunks until ``need`` bytes fit in free pages.

        The disk has no room, so the only room is the file's own freelist. Drops at
        least a tenth of the used bytes, like the size bound, so a disk that stays
        full costs a dropped record now and then, not one per spill.
        """
        with self._transaction():
            self._delete(row_acks, chunk_acks)
            want = 2 * need - store.free_bytes(self.conn)
            drops: list[Drop] = []
            if want > 0:
                drop = self._drop_oldest_chunks(max(want, store.used_bytes(self.conn) // 10), None, take_seq)
                drops = [drop] if drop else []
            self._save_meta(meta_for(drops))
        return drops

    def save_meta(self, meta: Meta) -> None:
        """Meta alone, in its own transaction (a seq reservation, a clean stop)."""
        with self._transaction():
            self._save_meta(meta)

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the file (and sync it), so that losing the log cannot lose what was in it.

        Done after each seq reservation: a card that loses the log must not lose the reservation too, or the
        next start would hand out seqs already sent (decision 0005).
        """
        self.conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()

    def members(self, first: int) -> set[int]:
        """The seqs in the chunk that starts at ``first``."""
        row = self.conn.execute("SELECT data FROM chunk WHERE first_seq = ?", (first,)).fetchone()
        return set() if row is None else {seq for seq, _ in chunks.decode(row[0])}

    def close(self) -> None:
        self.conn.close()

    def _transaction(self):
        return _Transaction(self.conn)

    def _delete(self, row_acks: Iterable[int], chunk_acks: Iterable[int]) -> None:
        self.conn.executemany("DELETE FROM outbox WHERE seq = ?", ((s,) for s in sorted(row_acks)))
        self.conn.executemany("DELETE FROM chunk WHERE first_seq = ?", ((s,) for s in sorted(chunk_acks)))

    def _save_meta(self, meta: Meta) -> None:
        self.conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                              [(meta.reserved_to, "next_seq"), (meta.unsaved_from, "unsaved_from"),
                               (meta.dropped_total, "dropped_total")])

    def _drop_oldest_chunks(self, bytes_wanted: int, newest: int | None, take_seq: Callable[[], int]) -> Drop | None:
        """Delete the oldest chunks worth about ``bytes_wanted`` (never the one at ``newest``), say so in a record."""
        picked, freed = [], 0
        for first, last, count, ts_from, ts_to, size in self.conn.execute(
                "SELECT first_seq, last_seq, count, ts_from, ts_to, length(data) FROM chunk ORDER BY first_seq"):
            if first == newest:
                break
            picked.append((first, last, count, ts_from, ts_to))
            freed += size
            if freed >= bytes_wanted:
                break
        if not picked:
            return None
        firsts = [p[0] for p in picked]
        self.conn.executemany("DELETE FROM chunk WHERE first_seq = ?", ((f,) for f in firsts))
        count = sum(p[2] for p in picked)
        body = {"kind": "dropped", "reason": "bound", "count": count, "seq_from": firsts[0],
                "seq_to": max(p[1] for p in picked),
                "ts_from": min((p[3] for p in picked if p[3] is not None), default=None),
                "ts_to": max((p[4] for p in picked if p[4] is not None), default=None)}
        seq = take_seq()
        self.conn.execute("INSERT INTO outbox (seq, priority, ts, body) VALUES (?, ?, NULL, ?)",
                          (seq, STATUS, dumps(body)))
        log.warning("outbox %s: dropped the %d oldest telemetry records (seq %d..%d) to stay within %d MB",
                    self.path, count, body["seq_from"], body["seq_to"], self.max_bytes // 2**20)
        return Drop(seq, count, firsts)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception (SQLite may have rolled back already)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")     # can fail too (a full disk): then roll back as for any failure
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite may have rolled back already; the next BEGIN reports a real problem
