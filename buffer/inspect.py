"""Looking into an outbox file without changing it: its figures and its records in send order (``linli outbox``).

Whether the agent runs or not, the file is only ever read:

* The database is opened with SQLite's ``mode=ro``: this connection cannot write, and
  a read-only connection never checkpoints the write-ahead log into the file.
* While a write-ahead log (``-wal``) exists — the agent runs, or was killed — the
  reader takes part in WAL's shared-memory index (``-shm``) as every reader does;
  WAL readers never block the writer. The database and its log are not changed.
* Without a ``-wal`` (the agent stopped cleanly, and its last connection removed the
  log), even a read-only SQLite connection would create an empty ``-wal`` and a
  ``-shm`` next to the file and leave them there. The file is then opened
  ``immutable=1`` instead: no lock, no companion file, nothing created. Should an
  agent start meanwhile, what it writes goes to a new log this connection does not
  see; a read it disturbs fails as an :class:`~buffer.errors.OutboxError`, never as
  wrong figures taken for right.
* Records are read a page at a time, each page its own short read transaction, so a
  long export never holds a snapshot that would keep the writer's log from being
  checkpointed; a record acknowledged meanwhile is simply not exported.

Telemetry chunks are decoded by :mod:`buffer.chunks`, as the agent's own reader does.
What the running agent holds only in memory (:mod:`buffer.hot`) is not in the file:
its ``health`` tells that part.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from buffer import chunks, fileinfo, store
from buffer.errors import ForeignFile, OutboxError
from buffer.records import Row

ALARM, STATUS, TELEMETRY = 0, 1, 2   # Priority's values: the order the uplink sends in
PRIORITY_NAMES = {ALARM: "alarm", STATUS: "status", TELEMETRY: "telemetry"}
#: Alarm and status rows read per query (each query is its own short read transaction).
PAGE_ROWS = 500


class OutboxMissing(OutboxError):
    """Nothing stands at the outbox's path (the agent never ran with this configuration, or a wrong path)."""


class OutboxView:
    """The outbox file at ``path``, read-only (see the module docstring); :meth:`close` when done."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise OutboxMissing(f"there is no outbox at {self.path}")
        found = fileinfo.foreign(self.path)
        if found is not None:
            raise ForeignFile(f"{self.path} is {found.describe()}, not an outbox; it was left untouched")
        if self.path.stat().st_size == 0 and not self._wal().exists():
            raise OutboxError(f"{self.path} is an empty file: the agent has not written an outbox in it yet")
        self.immutable = not self._wal().exists()
        try:
            self._conn = sqlite3.connect(self._uri(), uri=True, timeout=store.BUSY_TIMEOUT_S,
                                         isolation_level=None, check_same_thread=False)
            self._check_schema()
        except sqlite3.Error as exc:
            self.close()
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _uri(self) -> str:
        uri = "file:" + urllib.parse.quote(os.fspath(self.path.resolve())) + "?mode=ro"
        return uri + ("&immutable=1" if self.immutable else "")

    def _check_schema(self) -> None:
        app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != store.APPLICATION_ID:
            raise ForeignFile(f"{self.path} is an SQLite database of another program (application_id "
                              f"{app_id:#010x}), not an outbox; it was left untouched")
        if version != store.SCHEMA_VERSION:
            raise ForeignFile(f"{self.path} is an outbox of schema version {version}, this version reads "
                              f"{store.SCHEMA_VERSION}; the agent of the same version reads it")

    def close(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()
            self._conn = None

    def __enter__(self) -> OutboxView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- figures ----------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """What the file holds, from one consistent snapshot: depth by priority, times, seqs, losses, bytes."""
        with self._reading() as conn:
            depth = {name: 0 for name in PRIORITY_NAMES.values()}
            for priority, count in conn.execute("SELECT priority, count(*) FROM outbox GROUP BY priority"):
                depth[PRIORITY_NAMES.get(priority, str(priority))] = count
            depth["telemetry"] += conn.execute("SELECT coalesce(sum(count), 0) FROM chunk").fetchone()[0]
            rows = conn.execute("SELECT min(ts), max(ts), min(seq), max(seq) FROM outbox").fetchone()
            chunked = conn.execute("SELECT min(ts_from), max(ts_to), min(first_seq), max(last_seq) "
                                   "FROM chunk").fetchone()
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            dropped = [json.loads(body) for (body,) in conn.execute(
                "SELECT body FROM outbox WHERE priority = ? ORDER BY seq", (STATUS,))]
            dropped = [body for body in dropped if body.get("kind") == "dropped"]
            used = store.used_bytes(conn)
        return {
            "path": str(self.path),
            "depth": sum(depth.values()),
            "depth_by_priority": depth,
            "oldest_ts": _least(rows[0], chunked[0]),
            "newest_ts": _most(rows[1], chunked[1]),
            "seq_first": _least(rows[2], chunked[2]),
            "seq_last": _most(rows[3], chunked[3]),
            "next_seq": meta.get("next_seq"),
            "dropped_total": meta.get("dropped_total"),
            "dropped_records_waiting": len(dropped),
            "dropped_in_waiting_records": sum(int(body.get("count") or 0) for body in dropped),
            "file_bytes": self.path.stat().st_size,
            "wal_bytes": self._wal().stat().st_size if self._wal().exists() else 0,
            "bytes_used": used,
        }

    # --- records ----------------------------------------------------------------------------------------------
    def records(self, since_ms: int | None = None, until_ms: int | None = None) -> Iterator[Row]:
        """Every stored record in the order the uplink sends them: alarms, then status, then telemetry, each by seq.

        With ``since_ms``/``until_ms`` only records whose ``ts`` lies in ``[since_ms, until_ms]``
        (a record without ``ts``, such as a ``dropped`` one, then does not qualify).
        Read a page at a time: memory stays bounded by one page or one chunk.
        """
        timed = since_ms is not None or until_ms is not None
        low = since_ms if since_ms is not None else -2**63
        high = until_ms if until_ms is not None else 2**63 - 1

        def wanted(body: dict) -> bool:
            ts = body.get("ts")
            return not timed or (isinstance(ts, int) and low <= ts <= high)

        for priority in (ALARM, STATUS):
            after = 0
            while True:
                page = self._query("SELECT seq, body FROM outbox WHERE priority = ? AND seq > ? ORDER BY seq "
                                   "LIMIT ?", (priority, after, PAGE_ROWS))
                for seq, text in page:
                    body = json.loads(text)
                    if wanted(body):
                        yield Row(seq, priority, body)
                if len(page) < PAGE_ROWS:
                    break
                after = page[-1][0]
        after = 0
        while True:
            found = self._query("SELECT first_seq, data FROM chunk WHERE first_seq > ? AND coalesce(ts_to, ?) >= ? "
                                "AND coalesce(ts_from, ?) <= ? ORDER BY first_seq LIMIT 1",
                                (after, low, low, high, high))
            if not found:
                return
            after, data = found[0]
            for seq, body in chunks.decode(data):
                if wanted(body):
                    yield Row(seq, TELEMETRY, body)

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from None

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction on the connection (one consistent view); SQLite errors as OutboxError."""
        try:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from None


def _least(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _most(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
