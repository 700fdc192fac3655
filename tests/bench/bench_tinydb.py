"""TinyDB kept in SQLite, the alternative the outbox was measured against; prints figures, asserts nothing.

Run: ``python tests/bench/bench_tinydb.py [--dir DIR] [--rows 4000]``

TinyDB stores a whole database as one JSON document and hands it to its
``Storage`` on every change. Here the storage is what a TinyDB user wanting
crash safety would write: the document in one row of an SQLite table, WAL,
``synchronous=FULL`` — the same durability the outbox has. Every ``insert``
therefore reads, re-serialises and rewrites the whole document; the figures show
the cost growing with the number of rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from tinydb import TinyDB
    from tinydb.storages import Storage
except ImportError:  # tinydb is only in the "dev" extra: a skipped benchmark, not a failed run
    print("bench_tinydb: TinyDB is not installed (pip install -e '.[dev]' or pip install tinydb); skipped",
          file=sys.stderr)
    sys.exit(0)

T0 = 1_764_201_600_123


def reading(i: int) -> dict:
    """The same ~200-byte telemetry record as bench_outbox.py."""
    return {"kind": "reading", "sensor": "pump-pressure", "quantity": "pressure", "value": 0.42 + (i % 97) / 1000,
            "unit": "MPa", "quality": "good", "ts": T0 + i * 1000, "synced": True,
            "boot": "3f2a9c1e-5b7d-4e1f-9a2b-7c8d9e0f1a2b", "mono": 1_234_567 + i * 1000}


class SQLiteStorage(Storage):
    """TinyDB's JSON document in one row of an SQLite table (WAL, synchronous=FULL)."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS tinydb (id INTEGER PRIMARY KEY CHECK (id = 1), document TEXT)")
        self.writes = 0
        self.document_bytes = 0  # JSON bytes handed to SQLite, summed over all writes

    def read(self) -> dict[str, dict[str, Any]] | None:
        row = self.conn.execute("SELECT document FROM tinydb WHERE id = 1").fetchone()
        return None if row is None else json.loads(row[0])

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        document = json.dumps(data)
        self.conn.execute("INSERT OR REPLACE INTO tinydb (id, document) VALUES (1, ?)", (document,))
        self.writes += 1
        self.document_bytes += len(document)

    def close(self) -> None:
        self.conn.close()


def wchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split(": ")[1]) for line in f if line.startswith("wchar"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="directory for the database file (default: a temporary one)")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--window", type=int, default=500, help="rows per printed line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        db = TinyDB(str(Path(tmp) / "tinydb.sqlite"), storage=SQLiteStorage)
        storage: SQLiteStorage = db.storage
        table = db.table("outbox")
        print(f"TinyDB on SQLite — {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}, one insert per record (each one a durable commit)\n")
        print(f"  {'rows':>11} {'inserts/s':>10} {'ms/insert':>10} {'doc bytes/insert':>17} {'wchar/insert':>13}")
        total_started = time.perf_counter()
        for start in range(0, args.rows, args.window):
            writes, doc_bytes, io = storage.writes, storage.document_bytes, wchar()
            started = time.perf_counter()
            for i in range(start, min(args.rows, start + args.window)):
                table.insert(reading(i))
            elapsed = time.perf_counter() - started
            n = storage.writes - writes
            print(f"  {start + 1:>5}-{start + n:<5} {n / elapsed:>10,.0f} {elapsed / n * 1000:>10.2f} "
                  f"{(storage.document_bytes - doc_bytes) / n:>17,.0f} {(wchar() - io) / n:>13,.0f}")
        total = time.perf_counter() - total_started
        print(f"\n  {args.rows} rows in {total:.1f} s: {args.rows / total:,.0f} inserts/s overall, "
              f"{storage.writes} whole-document writes, {storage.document_bytes / 2**20:,.0f} MiB of JSON written "
              f"for {len(json.dumps(reading(1))) * args.rows / 2**20:.1f} MiB of records")
        db.close()


if __name__ == "__main__":
    sys.exit(main())
