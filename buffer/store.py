"""SQLite plumbing for the outbox: schema, connections, integrity check, moving a damaged file aside.

Everything here is about the file; what goes into it and when is decided in
:mod:`buffer.outbox`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from buffer import chunks
from buffer.errors import ForeignFile, OutboxError

SCHEMA_VERSION = 2   # 2: telemetry in compressed chunks, seqs reserved in blocks (decision 0005)
APPLICATION_ID = 0x4C4E4F42  # "LNOB": tells our file apart from any other SQLite database
SQLITE_MAGIC = b"SQLite format 3\x00"   # the first 16 bytes of every SQLite database file

# Primary result codes (the low byte of an extended code), see sqlite.org/rescode.html.
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26

BUSY_TIMEOUT_S = 5.0

# Files SQLite keeps next to the database in WAL mode; they travel with it when it is moved aside.
COMPANION_SUFFIXES = ("-wal", "-shm")

# Alarms and status records, one row each. seq is the rowid: explicit, assigned by the writer.
_OUTBOX_TABLE = ("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, priority INTEGER NOT NULL, ts INTEGER, "
                 "body TEXT NOT NULL)")
# Spilled telemetry, many records per row (buffer/chunks.py); keyed by the first seq it holds.
_CHUNK_TABLE = ("CREATE TABLE chunk (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, "
                "count INTEGER NOT NULL, ts_from INTEGER, ts_to INTEGER, data BLOB NOT NULL)")
_SCHEMA = (
    _OUTBOX_TABLE,
    "CREATE INDEX outbox_by_priority ON outbox (priority, seq)",
    _CHUNK_TABLE,
    # next_seq: the first seq not reserved; unsaved_from: the lowest seq that may have lived only in memory.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)
#: Records per chunk when a version-1 file's telemetry rows are moved into chunks.
_MIGRATION_CHUNK = 500


def result_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc``, or None when it is not an SQLite error."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_disk_full(exc: BaseException) -> bool:
    """True for SQLITE_FULL (disk full or ``max_page_count`` reached) and for ENOSPC."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return result_code(exc) == SQLITE_FULL


def is_corrupt(exc: BaseException) -> bool:
    """True when SQLite says the file is damaged or is not a database at all."""
    return result_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def _read_only_uri(path: Path) -> str:
    return "file:" + urllib.parse.quote(os.fspath(path.resolve())) + "?mode=ro"


def integrity_problem(path: Path) -> str | None:
    """Why the file at ``path`` cannot be trusted, or None when it is sound or absent.

    Runs ``PRAGMA quick_check`` on a read-only connection, so a damaged file is
    left exactly as found (a normal connection would checkpoint its WAL into it on
    close). Raises :class:`OutboxError` when the file cannot be opened for another
    reason (permissions, a directory in the way, I/O error) — moving such a file
    aside would not help and could hide the real fault.
    """
    wal = _companion(path, "-wal")
    if not path.exists():
        if wal.exists():
            return f"the database file is missing but its write-ahead log {wal.name} is present"
        return None
    conn = None
    try:
        conn = sqlite3.connect(_read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        found = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        if is_corrupt(exc):
            return str(exc)
        raise OutboxError(f"cannot open the outbox {path}: {exc}") from None
    finally:
        if conn is not None:
            conn.close()
    return None if found == ["ok"] else "; ".join(found)


def salvage_next_seq(path: Path) -> int | None:
    """The next seq recorded in a damaged outbox, or None when nothing can be read.

    Takes the largest of the stored ``next_seq`` and the highest stored seq + 1 —
    whichever of those pages still reads.
    """
    if not path.exists():
        return None
    best = None
    try:
        conn = sqlite3.connect(_read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        # SQLite refuses every read of a file shorter than its header says (truncated) unless
        # writable_schema is on; the connection is read-only, so this only lets us look.
        conn.execute("PRAGMA writable_schema=ON")
        for query in ("SELECT value FROM meta WHERE key = 'next_seq'", "SELECT max(seq) + 1 FROM outbox",
                      "SELECT max(last_seq) + 1 FROM chunk"):
            try:
                row = conn.execute(query).fetchone()
            except sqlite3.Error:
                continue
            if row and isinstance(row[0], int) and row[0] > 0:
                best = row[0] if best is None else max(best, row[0])
    finally:
        conn.close()
    return best


def last_modified_ms(path: Path) -> int:
    """The latest modification time of the database and its WAL, in epoch milliseconds (0 if none)."""
    times = [0]
    for candidate in (path, _companion(path, "-wal")):
        try:
            times.append(candidate.stat().st_mtime_ns // 1_000_000)
        except OSError:
            pass
    return max(times)


def utc_stamp(epoch_ms: int) -> str:
    """A compact UTC timestamp for file names.

    >>> utc_stamp(1795756500000)
    '20261127T051500Z'
    """
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch_ms / 1000))


def move_aside(path: Path, epoch_ms: int) -> Path:
    """Rename the database to ``<name>.corrupt-<UTC stamp>`` (its -wal/-shm follow) and return the new path.

    The database moves first: if we die half-way, what is left is an orphan WAL,
    which :func:`integrity_problem` reports, never a database silently missing
    its last commits.
    """
    base = f"{path.name}.corrupt-{utc_stamp(epoch_ms)}"
    target = path.with_name(base)
    attempt = 1
    while any(p.exists() for p in (target, *(_companion(target, s) for s in COMPANION_SUFFIXES))):
        target = path.with_name(f"{base}-{attempt}")
        attempt += 1
    try:
        if path.exists():
            os.replace(path, target)
        for suffix in COMPANION_SUFFIXES:
            if _companion(path, suffix).exists():
                os.replace(_companion(path, suffix), _companion(target, suffix))
        _sync_directory(path.parent)
    except OSError as exc:
        raise OutboxError(f"cannot move the corrupt outbox {path} aside to {target.name}: {exc.strerror}") from None
    return target


def _companion(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_writer(path: Path, *, first_seq: int, created_ms: int, max_bytes: int,
                max_page_count: int | None = None) -> tuple[sqlite3.Connection, bool]:
    """The writer's connection: WAL, ``synchronous=FULL``, bounded WAL, schema in place.

    Returns the connection and whether the schema was created now (with ``first_seq``
    as its next seq); an existing outbox keeps its own, and a version-1 outbox is
    brought to version 2 first.
    """
    if path.exists() and path.stat().st_size:
        _check_ours_read_only(path)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open the outbox {path}: {exc}") from None
    try:
        version = _our_version(conn, path)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise OutboxError(f"the outbox {path} cannot use write-ahead logging (journal_mode stays {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        # Checkpoint every ~1/16 of the bound (100..1000 pages) and truncate the WAL back to that
        # size afterwards, so the WAL never holds more than a fraction of what the bound allows.
        # Pages changed again and again (meta, state) are copied to the file once per checkpoint.
        wal_pages = max(100, min(1000, max_bytes // page_size // 16))
        conn.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
        conn.execute(f"PRAGMA journal_size_limit={wal_pages * page_size}")
        if max_page_count is not None:
            conn.execute(f"PRAGMA max_page_count={int(max_page_count)}")
        if version is None:
            _create_schema(conn, first_seq, created_ms)
        elif version == 1:
            _migrate_from_1(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise OutboxError(f"cannot open the outbox {path}: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn, version is None


def _check_ours_read_only(path: Path) -> None:
    """Refuse another program's database before a writing connection sees it.

    A writing connection, even one that only reads, checkpoints the database's
    write-ahead log into it when it closes: another program's fresh database (its
    tables still in its WAL) would be changed by merely being looked at.
    """
    try:
        conn = sqlite3.connect(_read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error:
        return  # the writing connection reports why it cannot open the file
    try:
        _our_version(conn, path)
    except sqlite3.Error:
        pass
    finally:
        conn.close()


def _our_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """Our schema version of the file, None for an empty database; raises for any other database."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == APPLICATION_ID and version in (1, SCHEMA_VERSION):
        return version
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id == 0 and version == 0 and not tables:
        return None
    # Somebody else's database (or a newer outbox): never delete or rewrite it.
    raise ForeignFile(f"{path} is not an outbox this version can use "
                      f"(application_id {app_id:#x}, user_version {version}); refusing to touch it")


def _create_schema(conn: sqlite3.Connection, first_seq: int, created_ms: int) -> None:
    with _transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                         [("next_seq", first_seq), ("unsaved_from", first_seq), ("dropped_total", 0),
                          ("created_ms", created_ms)])
        # Header fields written inside the transaction: a crash leaves either all of it or none.
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _migrate_from_1(conn: sqlite3.Connection) -> None:
    """Version 1 kept telemetry one row each and the exact next seq: move the rows into chunks."""
    with _transaction(conn):
        conn.execute(_CHUNK_TABLE)
        rows = conn.execute("SELECT seq, ts, body FROM outbox WHERE priority = 2 ORDER BY seq").fetchall()
        for i in range(0, len(rows), _MIGRATION_CHUNK):
            part = rows[i:i + _MIGRATION_CHUNK]
            stamps = [ts for _, ts, _ in part if ts is not None]
            conn.execute("INSERT INTO chunk (first_seq, last_seq, count, ts_from, ts_to, data) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (part[0][0], part[-1][0], len(part), min(stamps, default=None), max(stamps, default=None),
                          chunks.encode((seq, body) for seq, _, body in part)))
        conn.execute("DELETE FROM outbox WHERE priority = 2")
        # Version 1 reserved nothing ahead: its next_seq is exact, so nothing lived only in memory.
        conn.execute("INSERT INTO meta (key, value) SELECT 'unsaved_from', value FROM meta WHERE key = 'next_seq'")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection for the reading thread (WAL lets it read while the writer writes)."""
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open the outbox {path} for reading: {exc}") from None
    return conn


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes in pages that hold data: (page_count − freelist_count) × page_size.

    The file never shrinks (no VACUUM); freed pages go to the freelist and are
    reused, so this — not the file size — is what the size bound is measured on.
    Inside a write transaction it includes that transaction's changes.
    """
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * conn.execute("PRAGMA page_size").fetchone()[0]


def free_bytes(conn: sqlite3.Connection) -> int:
    """Bytes in freelist pages: room for new rows that needs no more disk."""
    return conn.execute("PRAGMA freelist_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]


def highest_stored_seq(conn: sqlite3.Connection) -> int:
    """The highest seq of any record in the file (0 when there is none)."""
    return max(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0],
               conn.execute("SELECT coalesce(max(last_seq), 0) FROM chunk").fetchone()[0])
