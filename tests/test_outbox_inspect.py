"""``linli outbox stats|peek|export``: real outboxes written by the real writer, read without being changed.

The read-only proofs compare the file's bytes and modification time before and after, and
look for companion files; a writer in another process keeps committing while a reader holds
a read open; the live agent whose broker cannot be reached has its records counted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import tracemalloc
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from buffer.inspect import OutboxView
from buffer.outbox import Outbox, Priority
from edge import cli
from edge.control import request
from edge.simulate.broker import free_port
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import linli
from tests.live_agent import agent_process, write_agent_config
from tests.mqtt_helpers import wait_until

T0 = 1_764_201_600_000   # 2025-11-27T00:00:00Z
WRITER = Path(__file__).with_name("outbox_writer.py")


def reading(i: int, pad: str = "") -> dict:
    return {"kind": "reading", "sensor": "meter-1", "quantity": "volume", "value": i / 10, "unit": "m3",
            "quality": "good", "ts": T0 + i * 1000, "pad": pad}


def alarm(ts: int) -> dict:
    return {"kind": "alarm", "alarm": "meter-1/no-use", "state": "raised", "severity": "warning", "ts": ts}


def filled(path: Path, readings: int, *, alarms: int = 0, spill_every: int = 500, **options) -> list[int]:
    """An outbox at ``path`` written by the real writer: readings spilled in chunks, alarms between them."""
    seqs = []
    with Outbox(path, commit_interval=3600, commit_max_records=1_000_000, **options) as box:
        for i in range(readings):
            seqs.append(box.add(reading(i), Priority.TELEMETRY))
            if alarms and i % (readings // alarms) == 0:
                seqs.append(box.add(alarm(T0 + i * 1000), Priority.ALARM))
            if i % spill_every == spill_every - 1:
                box.commit()
    return seqs


def run_linli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out):
        old, sys.stderr = sys.stderr, err
        try:
            status = cli.main(list(args))
        finally:
            sys.stderr = old
    return status, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_stats_count_every_priority_times_seqs_and_drops(tmp_path):
    box = tmp_path / "outbox.db"
    # A small bound makes the writer drop its oldest chunks and store a "dropped" record.
    filled(box, 6000, alarms=3, spill_every=250, max_bytes=64 * 1024)
    with Outbox(box) as reopened:
        expected = reopened.stats()
    status, out, _err = run_linli("outbox", "stats", "--json", "--outbox", str(box))
    assert status == 0
    found = json.loads(out)["file"]
    assert found["depth"] == expected["depth"]
    assert found["depth_by_priority"] == {name: expected["depth_by_priority"][str(p)]
                                         for p, name in enumerate(("alarm", "status", "telemetry"))}
    assert found["depth_by_priority"]["alarm"] == 3
    assert found["dropped_total"] == expected["dropped_total"] > 0
    assert found["dropped_records_waiting"] >= 1
    assert found["dropped_in_waiting_records"] == expected["dropped_total"]
    assert found["oldest_ts"] == T0 and found["newest_ts"] == T0 + 5999 * 1000
    assert found["seq_last"] == expected["next_seq"] - 1
    assert found["file_bytes"] == box.stat().st_size
    assert json.loads(out)["agent"]["running"] is False


def test_peek_lists_what_the_uplink_would_send_in_its_order(tmp_path):
    box = tmp_path / "outbox.db"
    filled(box, 1200, alarms=4, spill_every=300)
    with Outbox(box) as reopened:
        uplink_order = [(row.seq, int(row.priority), row.body) for row in reopened.fetch({}, 10)]
    status, out, _err = run_linli("outbox", "peek", "10", "--json", "--outbox", str(box))
    assert status == 0
    peeked = [json.loads(line) for line in out.splitlines()]
    names = {0: "alarm", 1: "status", 2: "telemetry"}
    assert [(p["seq"], p["priority"], p["record"]) for p in peeked] == \
        [(seq, names[priority], body) for seq, priority, body in uplink_order]
    assert [p["priority"] for p in peeked[:4]] == ["alarm"] * 4
    status, table, _err = run_linli("outbox", "peek", "5", "--outbox", str(box))
    assert len(table.splitlines()) == 5 and "meter-1/no-use raised" in table.splitlines()[0]


def test_export_jsonl_and_csv_with_a_time_window(tmp_path):
    box = tmp_path / "outbox.db"
    filled(box, 3000, alarms=2, spill_every=700)
    since, until = T0 + 1000 * 1000, T0 + 1999 * 1000
    status, out, _err = run_linli("outbox", "export", "--since", str(since), "--until", str(until),
                                  "--outbox", str(box))
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(line["record"]["ts"] for line in lines if line["priority"] == "telemetry") == \
        list(range(since, until + 1, 1000))
    assert all(since <= line["record"]["ts"] <= until for line in lines)
    target = tmp_path / "export.csv"
    status, _out, err = run_linli("outbox", "export", "--since", "2025-11-27T00:16:40+00:00", "--until",
                                  "2025-11-27T00:33:19+00:00", "--format", "csv", "--out", str(target),
                                  "--outbox", str(box))
    assert status == 0 and "1001 records" in err     # the readings and the alarm raised at 00:25:00
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [row["priority"] for row in rows] == ["alarm"] + ["telemetry"] * 1000
    assert rows[0]["alarm"] == "meter-1/no-use" and rows[0]["state"] == "raised"
    assert rows[1]["sensor"] == "meter-1" and json.loads(rows[1]["record"])["ts"] == int(rows[1]["ts"]) == since


def test_export_streams_many_records_in_bounded_memory(tmp_path):
    box = tmp_path / "outbox.db"
    count = 60_000
    filled(box, count, spill_every=2000)
    target = tmp_path / "all.jsonl"
    tracemalloc.start()
    try:
        status, _out, _err = run_linli("outbox", "export", "--out", str(target), "--outbox", str(box))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 0
    size = target.stat().st_size
    with target.open() as exported:
        assert sum(1 for _ in exported) == count
    # 60 000 records are ~12 MB of JSON; what is held at once is one chunk of 2 000 and its text.
    assert size > 10 * 2**20
    assert peak < 4 * 2**20, f"peak {peak} bytes while exporting {size} bytes"


def test_a_stopped_agents_outbox_is_read_without_a_byte_changed_or_a_file_created(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    filled(folder / "outbox.db", 2000, alarms=2)
    before = snapshot(folder)
    assert list(before) == ["outbox.db"]          # a clean stop leaves no -wal or -shm
    for args in (("stats", "--json"), ("peek", "3"), ("export", "--format", "csv")):
        status, _out, _err = run_linli("outbox", *args, "--outbox", str(folder / "outbox.db"))
        assert status == 0
    assert snapshot(folder) == before


def test_a_running_writers_file_and_log_are_not_changed_by_reading(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path, commit_interval=3600) as box:
        for i in range(1500):
            box.add(reading(i), Priority.TELEMETRY)
        box.commit()
        before = snapshot(tmp_path)
        assert {"outbox.db", "outbox.db-wal", "outbox.db-shm"} <= set(before)
        with OutboxView(path) as view:
            assert not view.immutable
            assert view.stats()["depth"] == 1500
            assert sum(1 for _ in view.records()) == 1500
        after = snapshot(tmp_path)
        # The database and its log are untouched; -shm is WAL's shared index, which every reader uses.
        assert {k: v for k, v in after.items() if not k.endswith("-shm")} == \
            {k: v for k, v in before.items() if not k.endswith("-shm")}


def test_the_writer_keeps_committing_while_a_reader_holds_a_snapshot(tmp_path):
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen([sys.executable, str(WRITER), str(path), "7", "inspect"], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).parent.parent,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        writer.stdout.readline()                  # the file exists and holds a commit
        with OutboxView(path) as view, view._reading() as conn:
            held = conn.execute("SELECT count(*) FROM chunk").fetchone()[0]
            # While this read transaction is open the writer commits on: WAL readers never block it.
            committed = [writer.stdout.readline() for _ in range(20)]
            assert all(line.strip() for line in committed)
            assert conn.execute("SELECT count(*) FROM chunk").fetchone()[0] == held   # one consistent view
        with OutboxView(path) as view:
            assert view.stats()["depth"] > 0
            assert sum(1 for _ in view.records()) > 0
    finally:
        writer.kill()
        writer.wait()


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_text("[gateway]\nid = 'gw'\n"), "a text file of"),
    (lambda p: p.mkdir(), "a directory"),
    (lambda p: sqlite3.connect(p).executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1);"),
     "SQLite database of another program"),
])
def test_what_is_not_an_outbox_is_refused_and_left_untouched(tmp_path, make, words):
    path = tmp_path / "outbox.db"
    make(path)
    before = snapshot(tmp_path)
    status, out, err = run_linli("outbox", "stats", "--outbox", str(path))
    assert status == 65 and words in err and "not an outbox" in err and not out
    assert snapshot(tmp_path) == before


def test_no_outbox_at_all_is_exit_66_and_nothing_is_created(tmp_path):
    status, _out, err = run_linli("outbox", "peek", "--outbox", str(tmp_path / "outbox.db"))
    assert status == 66 and "no outbox at" in err
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_write_over_the_outbox(tmp_path):
    path = tmp_path / "outbox.db"
    filled(path, 10)
    before = snapshot(tmp_path)
    status, _out, err = run_linli("outbox", "export", "--out", str(path), "--outbox", str(path))
    assert status == 73 and "export writes elsewhere" in err
    assert snapshot(tmp_path) == before


def test_stats_of_an_agent_whose_broker_is_unreachable(tmp_path):
    """The agent runs with nobody at the broker's port: its records wait, in memory and then in the file."""
    config = tmp_path / "edge.toml"
    state = tmp_path / "state"
    with PressureTransmitterSim(unit_id=1, profile=0.35) as transmitter:
        write_agent_config(config, broker_port=free_port(), serial_port=transmitter.port, state=state)
        socket_path = str(state / "control.sock")
        with agent_process([sys.executable, "-m", "edge.cli", "run"], config,
                           env={**os.environ, "LINLI_CONFIG": str(config)}, cwd=Path(__file__).parent.parent):
            wait_until(lambda: request(socket_path, "health")["result"]["outbox"]["depth"] >= 10, 20,
                       "readings waiting in the agent")
            running = _stats_json(config)
            assert running["agent"]["running"] is True
            assert running["agent"]["depth"] >= 10
            assert running["agent"]["depth_by_priority"]["telemetry"] >= 1
            assert running["agent"]["pending_in_memory"] <= running["agent"]["depth"]
        stopped = _stats_json(config)
    # A clean stop writes what was held in memory: the file alone now holds every record waiting.
    assert stopped["agent"]["running"] is False and "not running" in stopped["agent"]["reason"]
    assert stopped["file"]["depth"] >= running["agent"]["depth"]
    assert stopped["file"]["depth_by_priority"]["telemetry"] >= 10
    assert stopped["file"]["oldest_ts"] <= stopped["file"]["newest_ts"]


def _stats_json(config: Path) -> dict:
    proc = linli("outbox", "stats", "--json", env={"LINLI_CONFIG": str(config)}, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)
