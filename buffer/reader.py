"""The outbox file as the reading thread sees it: committed records, state and figures, never a write.

Each thread that reads gets its own read-only connection (WAL lets it read while
the writer commits), and each call looks at one consistent snapshot.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from buffer import chunks, store
from buffer.errors import OutboxError

ALARM, STATUS, TELEMETRY = 0, 1, 2   # Priority's values; plain ints so this module needs nothing from outbox.py


class DiskReader:
    """Reads the outbox file at ``path`` for any thread; :meth:`close` closes every connection it opened."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def records(self, priority: int, cursor: int, want: int) -> list[tuple[int, dict]]:
        """Up to ``want`` stored records of ``priority`` with ``seq > cursor``, by seq."""
        with self._snapshot() as conn:
            if priority != TELEMETRY:
                return [(seq, json.loads(body)) for seq, body in conn.execute(
                    "SELECT seq, body FROM outbox WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (priority, cursor, want))]
            found: list[tuple[int, dict]] = []
            for (data,) in conn.execute("SELECT data FROM chunk WHERE last_seq > ? ORDER BY first_seq", (cursor,)):
                found += [(seq, body) for seq, body in chunks.decode(data) if seq > cursor]
                if len(found) >= want:
                    break
            return found[:want]

    def state(self, key: str) -> Any:
        """The committed value stored under ``key`` (None when there is none)."""
        with self._snapshot() as conn:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def figures(self) -> tuple[dict[int, int], list[int], int]:
        """Stored records per priority, the oldest ``ts`` of each kind of storage, and bytes in use."""
        counts = {ALARM: 0, STATUS: 0, TELEMETRY: 0}
        with self._snapshot() as conn:
            for priority, count in conn.execute("SELECT priority, count(*) FROM outbox GROUP BY priority"):
                counts[priority] = counts.get(priority, 0) + count
            counts[TELEMETRY] += conn.execute("SELECT coalesce(sum(count), 0) FROM chunk").fetchone()[0]
            # The first row of each kind by its key (the index), instead of scanning every ts.
            oldest = [row[0] for p in (ALARM, STATUS) for row in conn.execute(
                "SELECT ts FROM outbox WHERE priority = ? AND ts IS NOT NULL ORDER BY seq LIMIT 1", (p,))]
            oldest += [row[0] for row in conn.execute(
                "SELECT ts_from FROM chunk WHERE ts_from IS NOT NULL ORDER BY first_seq LIMIT 1")]
            used = store.used_bytes(conn)
        return counts, oldest, used

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside one read transaction (one consistent view)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = store.open_reader(self.path)
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from exc
