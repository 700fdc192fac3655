"""Outbox throughput and write volume; prints figures, asserts nothing.

Run: ``python tests/bench/bench_outbox.py [--dir DIR]`` (DIR: where the files go,
by default a fresh temporary directory — put it on the storage you care about;
tmpfs makes the fsyncs free and the figures meaningless).

Figures:
- ingest: records/s for group commits of 1, 100, 1000 and 2000 records
  (``synchronous=FULL``: every commit waits for the disk);
- drain: the uplink's loop — fetch 500, ack them, commit — in records/s, with
  4,000 and 100,000 rows waiting;
- write volume per record from ``/proc/self/io``: ``wchar`` (bytes SQLite hands to
  write(): WAL frames, then checkpoint copies into the database) and
  ``write_bytes`` (page-cache pages dirtied, i.e. what the block layer will write);
  plus the files' sizes afterwards and the bytes a row takes in the database.

Each figure is the median of ``--repeat`` runs (default 3): the box it runs on may be shared.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from buffer.outbox import Outbox, Priority

T0 = 1_764_201_600_123


def reading(i: int) -> dict:
    """A telemetry record as the agent stores it (about 200 bytes of JSON)."""
    return {"kind": "reading", "sensor": "pump-pressure", "quantity": "pressure", "value": 0.42 + (i % 97) / 1000,
            "unit": "MPa", "quality": "good", "ts": T0 + i * 1000, "synced": True,
            "boot": "3f2a9c1e-5b7d-4e1f-9a2b-7c8d9e0f1a2b", "mono": 1_234_567 + i * 1000}


def io_counters() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {key: int(value) for key, value in (line.split(": ") for line in f)}


def fresh(directory: Path, name: str) -> Path:
    path = directory / name
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


def ingest(directory: Path, batch: int, total: int) -> tuple[float, float]:
    """Records/s and commits/s adding ``total`` records in commits of ``batch``."""
    with Outbox(fresh(directory, f"ingest-{batch}.db"), commit_max_records=batch) as box:
        started = time.perf_counter()
        for i in range(total):
            box.add(reading(i), Priority.TELEMETRY)
            if box.commit_due():
                box.commit()
        box.commit()
        elapsed = time.perf_counter() - started
    return total / elapsed, (total / batch) / elapsed


def fill(box: Outbox, rows: int, batch: int = 2000) -> None:
    for start in range(0, rows, batch):
        for i in range(start, min(rows, start + batch)):
            box.add(reading(i), Priority.TELEMETRY)
        box.commit()


def volume(directory: Path, rows: int) -> dict[str, float]:
    """Write volume of spilling ``rows`` in commits of 2000 (the link down), then of draining them all."""
    path = fresh(directory, f"volume-{rows}.db")
    with Outbox(path, max_bytes=256 * 2**20) as box:
        before = io_counters()
        started = time.perf_counter()
        fill(box, rows)
        ingest_s = time.perf_counter() - started
        after_fill = io_counters()
        db_size = path.stat().st_size
        wal_size = Path(str(path) + "-wal").stat().st_size
        stats_s = time.perf_counter()
        stats = box.stats()
        stats_s = time.perf_counter() - stats_s
        drained = 0
        cursor: dict[int, int] = {}
        started = time.perf_counter()
        while rows_ := box.fetch(cursor, 500):     # as the uplink does: a cursor per priority
            box.ack(r.seq for r in rows_)
            box.commit()
            drained += len(rows_)
            for row in rows_:
                cursor[row.priority] = max(cursor.get(row.priority, 0), row.seq)
        drain_s = time.perf_counter() - started
        after_drain = io_counters()
    return {
        "ingest_rps": rows / ingest_s,
        "drain_rps": drained / drain_s,
        "wchar_per_record": (after_fill["wchar"] - before["wchar"]) / rows,
        "write_bytes_per_record": (after_fill["write_bytes"] - before["write_bytes"]) / rows,
        "drain_wchar_per_record": (after_drain["wchar"] - after_fill["wchar"]) / rows,
        "db_bytes": db_size, "wal_bytes": wal_size, "used_per_record": stats["bytes_used"] / rows,
        "stats_ms": stats_s * 1000,
    }


def median_of(repeat: int, run):
    """Run ``run()`` ``repeat`` times; the median of each figure (a tuple or a dict of numbers)."""
    results = [run() for _ in range(repeat)]
    if isinstance(results[0], dict):
        return {key: statistics.median(r[key] for r in results) for key in results[0]}
    return tuple(statistics.median(column) for column in zip(*results, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="directory for the database files (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        print(f"outbox benchmark — {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}, files in {directory}, median of {args.repeat}")
        print(f"record size: {len(json.dumps(reading(1), separators=(',', ':')))} bytes of JSON\n")
        print("ingest (synchronous=FULL, one commit per batch)")
        print(f"  {'batch':>6} {'records/s':>12} {'commits/s':>10}")
        for batch, total in ((1, 300), (100, 20_000), (1000, 40_000), (2000, 40_000)):
            rps, cps = median_of(args.repeat, functools.partial(ingest, directory, batch, total))
            print(f"  {batch:>6} {rps:>12,.0f} {cps:>10,.1f}")
        print("\nfill (commits of 2000) and drain (fetch 500 + ack + commit), write volume per record")
        print(f"  {'rows':>7} {'ingest/s':>10} {'drain/s':>10} {'wchar/rec':>10} {'wbytes/rec':>11} "
              f"{'drain wchar/rec':>16} {'used/rec':>9} {'db file':>11} {'wal file':>10} {'stats()':>8}")
        for rows in (4_000, 100_000):
            v = median_of(args.repeat, functools.partial(volume, directory, rows))
            print(f"  {rows:>7,} {v['ingest_rps']:>10,.0f} {v['drain_rps']:>10,.0f} {v['wchar_per_record']:>10,.0f} "
                  f"{v['write_bytes_per_record']:>11,.0f} {v['drain_wchar_per_record']:>16,.0f} "
                  f"{v['used_per_record']:>9,.0f} {v['db_bytes']:>11,.0f} {v['wal_bytes']:>10,.0f} "
                  f"{v['stats_ms']:>6.1f}ms")
        print("\nwchar: bytes passed to write() (WAL frames + checkpoint copies); "
              "wbytes: page-cache bytes dirtied (what reaches the block device); "
              "used: database bytes in use per row; stats(): one health query with that many rows waiting")


if __name__ == "__main__":
    sys.exit(main())
