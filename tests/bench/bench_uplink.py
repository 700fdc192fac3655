"""How fast the uplink drains a backlog from the outbox to a local mosquitto. Prints figures, asserts nothing.

Run:  python tests/bench/bench_uplink.py [records]

For each setting: a fresh outbox with ``records`` readings (shaped as on the
wire, docs/design.md, Topics and payloads), a fresh mosquitto on loopback, then the time from ``Uplink.start()``
until every seq has been acknowledged by the broker and handed to ``on_acked``
(which a writer thread applies to the outbox, as the agent's core does). That
includes connecting, reading the outbox, building JSON and the PUBACK round trips;
it excludes any subscriber (a slow one is the broker's problem, not the uplink's).
"""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from buffer.outbox import Priority
from edge.simulate.broker import LocalBroker
from edge.uplink import Uplink
from tests.mqtt_helpers import BOOT, OutboxWriter, reading, uplink_config

SETTINGS = [
    # (label, protocol, batch_max_records, batch_max_bytes, inflight)
    ("defaults (500 rec / 64 KiB, window 20)", "3.1.1", 500, 65536, 20),
    ("defaults, MQTT 5", "5", 500, 65536, 20),
    ("small batches (50 rec), window 20", "3.1.1", 50, 65536, 20),
    ("defaults, window 1 (stop-and-wait)", "3.1.1", 500, 65536, 1),
    ("one record per message, window 20", "3.1.1", 1, 65536, 20),
]
RUNS = 3


def drain_once(records: int, protocol: str, max_records: int, max_bytes: int, inflight: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(kind="mosquitto") as broker:
        writer = OutboxWriter(Path(tmp) / "outbox.db")
        try:
            seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(records)])
            config = uplink_config(broker.host, broker.port, protocol=protocol, batch_max_records=max_records,
                                   batch_max_bytes=max_bytes, inflight=inflight)
            uplink = Uplink(config, writer.outbox, writer.on_acked, version="bench", boot_id=BOOT)
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            uplink.start()
            while len(writer.acked) < len(seqs):
                time.sleep(0.002)
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            messages = uplink.status()["sent_messages"] - 1          # minus the online status
            uplink.stop(0)
        finally:
            writer.close()
    return {"elapsed": elapsed, "cpu": cpu, "messages": messages}


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}; load average now {os.getloadavg()[0]:.2f}")
    print(f"backlog: {records} readings of ~{len(str(reading(0)))} characters; median of {RUNS} runs\n")
    print(f"{'setting':<42} {'records/s':>10} {'messages/s':>11} {'rec/msg':>8} {'CPU µs/rec':>11}")
    for label, protocol, max_records, max_bytes, inflight in SETTINGS:
        count = records if max_records > 1 else min(records, 5_000)
        runs = [drain_once(count, protocol, max_records, max_bytes, inflight) for _ in range(RUNS)]
        elapsed = statistics.median(r["elapsed"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        messages = runs[0]["messages"]
        print(f"{label:<42} {count / elapsed:>10,.0f} {messages / elapsed:>11,.0f} {count / messages:>8.1f} "
              f"{cpu / count * 1e6:>11.1f}")
    print("\nCPU µs/rec is the whole process (uplink, writer thread applying acks, this loop), "
          "not mosquitto.")


if __name__ == "__main__":
    main()
