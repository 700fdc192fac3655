"""The outbox on real SQLite files: ordering, seqs, group commit, acks, state, the size bound."""

from __future__ import annotations

import queue
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from buffer.outbox import Outbox, OutboxError, OutboxRecordError, Priority, Row
from tests.outbox_helpers import raw_rows

T0 = 1_764_201_600_000  # epoch ms used as the base of every record's ts


class FakeClock:
    """Our own injectable monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reading(i: int, **extra) -> dict:
    """A telemetry reading as it goes on the wire (docs/design.md, Topics and payloads), ~200 bytes of JSON."""
    return {"kind": "reading", "sensor": "pump-pressure", "quantity": "pressure", "value": 0.42 + i / 1000,
            "unit": "MPa", "quality": "good", "ts": T0 + i * 1000, "synced": True,
            "boot": "3f2a9c1e-5b7d-4e1f-9a2b-7c8d9e0f1a2b", "mono": 123456 + i, **extra}


def alarm(i: int) -> dict:
    return {"kind": "alarm", "alarm": "pump-pressure/low", "state": "raised", "severity": "critical",
            "value": 0.08, "limit": 0.1, "ts": T0 + i * 1000, "synced": True, "message": f"pressure low #{i}"}




@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "outbox.db"


# --- ordering and seqs -------------------------------------------------------------------------
def test_fetch_hands_out_alarms_then_status_then_telemetry_each_in_seq_order(db):
    with Outbox(db) as box:
        for i in range(3):
            box.add(reading(i), Priority.TELEMETRY)
        box.add({"kind": "note", "text": "status", "ts": T0}, Priority.STATUS)
        box.add(reading(3), Priority.TELEMETRY)
        assert box.commit() == [1, 2, 3, 4, 5]
        box.add(alarm(9), Priority.ALARM)
        rows = box.fetch({}, 100)
    assert [(r.seq, r.priority) for r in rows] == [
        (6, Priority.ALARM), (4, Priority.STATUS), (1, Priority.TELEMETRY), (2, Priority.TELEMETRY),
        (3, Priority.TELEMETRY), (5, Priority.TELEMETRY)]
    assert rows[0] == Row(6, Priority.ALARM, alarm(9))
    assert rows[2].body == reading(0)
    assert all("seq" not in r.body for r in rows)


def test_fetch_follows_cursors_per_priority_and_honours_limit(db):
    with Outbox(db) as box:
        for i in range(10):
            box.add(reading(i), Priority.TELEMETRY)
            if i % 3 == 0:
                box.add({"kind": "note", "n": i}, Priority.STATUS)
        box.commit()
        status = [r.seq for r in box.fetch({}, 100) if r.priority == Priority.STATUS]
        telemetry = [r.seq for r in box.fetch({}, 100) if r.priority == Priority.TELEMETRY]
        assert len(status) == 4 and len(telemetry) == 10

        first = box.fetch({}, 6)  # limit spans a priority boundary
        assert [r.seq for r in first] == status + telemetry[:2]
        after = {Priority.STATUS: status[-1], Priority.TELEMETRY: telemetry[1]}
        second = box.fetch(after, 3)
        assert [r.seq for r in second] == telemetry[2:5]
        after[Priority.TELEMETRY] = telemetry[-1]
        assert box.fetch(after, 10) == []
        assert box.fetch({2: telemetry[7]}, 0) == []
        assert [r.seq for r in box.fetch({1: status[-1], 2: telemetry[7]}, 10)] == telemetry[8:]


def test_seqs_are_contiguous_across_many_commits_and_reopens(db):
    rng = random.Random(7)
    assigned: list[int] = []
    n = 0
    for _ in range(4):
        with Outbox(db) as box:
            for _ in range(rng.randint(3, 8)):
                for _ in range(rng.randint(0, 40)):
                    box.add(reading(n), Priority(rng.choice([1, 2, 2, 2])))
                    n += 1
                assigned += box.commit()
            box.add(reading(n), Priority.TELEMETRY)  # left pending: close() commits it
            n += 1
        assigned.append(max(raw_rows(db)))
    assert assigned == list(range(1, n + 1))
    assert sorted(raw_rows(db)) == assigned
    with Outbox(db) as box:
        assert box.stats()["next_seq"] == n + 1


def test_seqs_are_never_reused_after_everything_was_acked_and_the_file_reopened(db):
    with Outbox(db) as box:
        for i in range(5):
            box.add(reading(i), Priority.TELEMETRY)
        assert box.commit() == [1, 2, 3, 4, 5]
        box.ack([r.seq for r in box.fetch({}, 10)])
        box.commit()
        assert box.fetch({}, 10) == []
    assert raw_rows(db) == {}
    with Outbox(db) as box:
        box.add(reading(5), Priority.TELEMETRY)
        assert box.commit() == [6]


# --- group commit ------------------------------------------------------------------------------
def test_telemetry_waits_in_memory_where_the_reader_finds_it_and_reaches_the_file_only_when_spilled(db):
    with Outbox(db, commit_interval=60) as box:
        assert box.add(reading(1), Priority.TELEMETRY) == 1
        assert box.add(reading(2), Priority.TELEMETRY) == 2
        assert raw_rows(db) == {}
        assert box.fetch({}, 10) == [Row(1, Priority.TELEMETRY, reading(1)), Row(2, Priority.TELEMETRY, reading(2))]
        assert box.stats()["pending"] == 2
        assert box.commit() == [1, 2]
        assert raw_rows(db) == {1: (2, reading(1)), 2: (2, reading(2))}
        assert box.stats()["pending"] == 0
        assert [r.seq for r in box.fetch({}, 10)] == [1, 2]   # now from the file


def test_commit_is_due_after_the_interval(db):
    clock = FakeClock()
    with Outbox(db, commit_interval=1.0, clock=clock) as box:
        assert box.commit_due() is False
        assert box.seconds_until_due() is None
        assert box.commit() == []
        box.add(reading(1), Priority.TELEMETRY)
        assert box.seconds_until_due() == 1.0
        clock.now += 0.75
        box.add(reading(2), Priority.TELEMETRY)  # the interval counts from the oldest pending record
        assert box.seconds_until_due() == pytest.approx(0.25)
        assert box.commit_due() is False
        clock.now += 0.25
        assert box.commit_due() is True
        assert box.seconds_until_due() == 0.0
        assert box.commit() == [1, 2]
        assert box.commit_due() is False and box.seconds_until_due() is None


def test_acks_and_changed_state_make_a_commit_due_but_only_after_their_own_delays(db):
    clock = FakeClock()
    with Outbox(db, clock=clock, state_interval=60) as box:
        box.set_state("k", 1)
        assert box.seconds_until_due() == 60.0     # state is written at most once a minute
        clock.now += 60.0
        assert box.commit_due() is True
        assert box.commit() == []
        assert box.get_state("k") == 1
        box.set_state("k", 1)                      # unchanged: nothing to write, ever
        assert box.seconds_until_due() is None
        box.ack([42])                              # an alarm row on disk, say: deleted in a batch, later
        assert box.seconds_until_due() == 10.0


def test_state_is_offered_at_most_once_per_interval(db):
    clock = FakeClock()
    with Outbox(db, clock=clock, state_interval=60) as box:
        assert box.state_due() is False
        clock.now += 60
        assert box.state_due() is True
        assert box.state_due() is False            # asked again at once: not yet
        clock.now += 59
        assert box.state_due() is False
        clock.now += 1
        assert box.state_due() is True


def test_commit_is_due_when_enough_records_wait(db):
    clock = FakeClock()
    with Outbox(db, commit_max_records=5, clock=clock) as box:
        for i in range(4):
            box.add(reading(i), Priority.TELEMETRY)
        assert box.commit_due() is False
        box.add(reading(4), Priority.TELEMETRY)
        assert box.commit_due() is True
        assert box.seconds_until_due() == 0.0
        assert box.commit() == [1, 2, 3, 4, 5]


def test_an_alarm_is_on_disk_when_add_returns_and_telemetry_stays_in_memory(db):
    clock = FakeClock()
    with Outbox(db, commit_interval=60, clock=clock) as box:
        box.add(reading(1), Priority.TELEMETRY)
        box.add(reading(2), Priority.TELEMETRY)
        box.add(alarm(3), Priority.ALARM)
        assert raw_rows(db) == {3: (0, alarm(3))}
        assert box.stats()["pending"] == 2
        assert box.commit_due() is False
        assert [r.seq for r in box.fetch({}, 10)] == [3, 1, 2]


def test_the_reader_is_told_when_there_is_something_new(db):
    told: list[int] = []
    with Outbox(db, commit_interval=60) as box:
        box.on_available = lambda: told.append(len(told))
        box.add(reading(1), Priority.TELEMETRY)
        box.add(alarm(2), Priority.ALARM)
        box.ack([1])
        assert len(told) == 2


# --- acks and state ----------------------------------------------------------------------------
def test_acked_records_in_memory_never_touch_the_disk_and_a_chunk_goes_when_all_of_it_is_acked(db):
    with Outbox(db) as box:
        for i in range(10):
            box.add(reading(i), Priority.TELEMETRY)
        box.commit()                                   # seqs 1..10 in one chunk
        box.add(alarm(10), Priority.ALARM)             # 11, a row
        box.add(reading(11), Priority.TELEMETRY)       # 12, in memory
        box.ack([2, 5, 7, 999, 12])                    # 999 was never assigned: ignored
        assert box.stats()["pending"] == 0
        assert 12 not in [r.seq for r in box.fetch({}, 100)]
        assert box.commit() == []
        assert sorted(raw_rows(db)) == list(range(1, 12))   # the chunk is not yet wholly acknowledged
        box.ack([1, 3, 4, 6, 8, 9, 11])
        box.commit()
        assert sorted(raw_rows(db)) == list(range(1, 11))   # the alarm row went; the chunk waits for 10
        box.ack([10])
        box.commit()
        assert raw_rows(db) == {}
        assert box.fetch({}, 100) == []


def test_state_is_committed_with_the_next_commit_and_survives_reopen(db):
    with Outbox(db) as box:
        box.set_state("driver/meter", {"pulses": 1207, "unit": "L"})
        assert box.get_state("driver/meter") is None
        assert box.get_state("driver/meter", "none yet") == "none yet"
        box.commit()
        assert box.get_state("driver/meter") == {"pulses": 1207, "unit": "L"}
        box.set_state("driver/meter", {"pulses": 1208, "unit": "L"})
        box.set_state("alarms", ["pump-pressure/low"])
    with Outbox(db) as box:
        assert box.get_state("driver/meter") == {"pulses": 1208, "unit": "L"}
        assert box.get_state("alarms") == ["pump-pressure/low"]
        with pytest.raises(OutboxRecordError, match="not JSON-able"):
            box.set_state("bad", {1, 2})


# --- stats and refusals ------------------------------------------------------------------------
def test_stats_report_depth_bytes_seq_and_oldest_ts(db):
    with Outbox(db, max_bytes=1 << 20) as box:
        box.add(reading(5), Priority.TELEMETRY)
        box.add(reading(2), Priority.TELEMETRY)
        box.add({"kind": "note"}, Priority.STATUS)
        box.add(alarm(7), Priority.ALARM)
        box.add(reading(8), Priority.TELEMETRY)
        stats = box.stats()
        on_disk = db.stat().st_size + (db.parent / "outbox.db-wal").stat().st_size
    assert stats["depth"] == 5
    assert stats["depth_by_priority"] == {"0": 1, "1": 1, "2": 3}
    assert stats["next_seq"] == 6
    assert stats["pending"] == 4                # all but the alarm wait in memory
    assert stats["oldest_ts"] == T0 + 2000      # the oldest ts wherever it waits; the note has none
    assert stats["dropped_total"] == 0 and stats["disk_full"] is False
    assert stats["max_bytes"] == 1 << 20
    assert 4096 <= stats["bytes_used"] <= on_disk


def test_refuses_records_it_cannot_store_and_keeps_nothing_of_them(db):
    with Outbox(db) as box:
        bad = [
            ({"sensor": "x", "value": 1}, Priority.TELEMETRY, "needs 'ts'"),
            ({"sensor": "x", "ts": "2026-01-01"}, Priority.TELEMETRY, "needs 'ts'"),
            ({"sensor": "x", "ts": True}, Priority.TELEMETRY, "needs 'ts'"),
            ({"sensor": "x", "ts": 1, "value": float("nan")}, Priority.TELEMETRY, "not JSON-able"),
            ({"sensor": "x", "ts": 1, "value": object()}, Priority.TELEMETRY, "not JSON-able"),
            ({"seq": 3, "ts": 1}, Priority.ALARM, "must not carry 'seq'"),
            (["not", "a", "dict"], Priority.STATUS, "must be a dict"),
            ({"ts": 1}, 7, "unknown priority"),
        ]
        for record, priority, message in bad:
            with pytest.raises(OutboxRecordError, match=message):
                box.add(record, priority)
        assert box.stats()["pending"] == 0
        assert box.commit() == []
        box.add({"kind": "note"}, 1)  # a plain int priority and no ts are fine outside telemetry
        assert box.commit() == [1]


def test_a_closed_outbox_says_so(db):
    box = Outbox(db)
    box.close()
    box.close()
    with pytest.raises(OutboxError, match="is closed"):
        box.add(reading(1), Priority.TELEMETRY)
    with pytest.raises(OutboxError, match="is closed"):
        box.fetch({}, 1)


def test_a_directory_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(OutboxError, match="cannot create the outbox directory .*plain-file"):
        Outbox(tmp_path / "plain-file" / "outbox.db")


def test_a_path_that_is_a_directory_is_a_clear_error_not_corruption(tmp_path):
    (tmp_path / "outbox.db").mkdir()
    with pytest.raises(OutboxError, match="is a directory, not an outbox"):
        Outbox(tmp_path / "outbox.db")
    assert list(tmp_path.iterdir()) == [tmp_path / "outbox.db"]


def test_another_programs_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(OutboxError, match="not an outbox"):
        Outbox(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


# --- the size bound ----------------------------------------------------------------------------
def check_every_gap_is_explained(path: Path, next_seq: int) -> list[dict]:
    """Every seq below next_seq is stored or inside a dropped record's range; returns the dropped bodies."""
    rows = raw_rows(path)
    dropped = [body for _, body in rows.values() if body.get("kind") == "dropped"]
    covered = set(rows)
    for body in dropped:
        covered |= set(range(body["seq_from"], body["seq_to"] + 1))
    assert set(range(1, next_seq)) <= covered
    assert max(rows) < next_seq
    return dropped


def test_over_the_bound_the_oldest_telemetry_goes_first_alarms_stay_and_the_loss_is_recorded(db):
    max_bytes = 256 * 1024
    rng = random.Random(11)
    ts_of: dict[int, int] = {}  # seq -> ts of every telemetry record committed
    alarms = []
    n = 0
    with Outbox(db, max_bytes=max_bytes) as box:
        for _ in range(12):  # 12 × 150 × ~200 B incompressible ≈ 360 kB of telemetry through a 256 kB outbox
            batch = [reading(n + k, noise=rng.randbytes(100).hex()) for k in range(150)]
            n += 150
            for record in batch:
                box.add(record, Priority.TELEMETRY)
            seqs = box.commit()  # the batch's seqs in order, then any dropped record's
            ts_of.update((seq, record["ts"]) for seq, record in zip(seqs, batch, strict=False))
            assert box.stats()["bytes_used"] <= max_bytes
            alarms.append(alarm(n))
            box.add(alarms[-1], Priority.ALARM)
        stats = box.stats()
    rows = raw_rows(db)
    dropped = check_every_gap_is_explained(db, stats["next_seq"])
    assert dropped, "the bound was crossed, something must have been dropped"
    assert stats["dropped_total"] == sum(d["count"] for d in dropped)
    assert sorted(body["message"] for prio, body in rows.values() if prio == Priority.ALARM) == \
        sorted(a["message"] for a in alarms)
    gone = sorted(seq for seq in ts_of if seq not in rows)
    kept = sorted(seq for seq in ts_of if seq in rows)
    assert gone and kept and max(gone) < min(kept)  # oldest first
    assert sum(d["count"] for d in dropped) == len(gone)
    for d in dropped:
        inside = [seq for seq in gone if d["seq_from"] <= seq <= d["seq_to"]]
        assert d["count"] == len(inside)
        assert (d["seq_from"], d["seq_to"]) == (inside[0], inside[-1])
        assert (d["ts_from"], d["ts_to"]) == (min(ts_of[s] for s in inside), max(ts_of[s] for s in inside))
    for seq, (priority, body) in rows.items():
        if body.get("kind") == "dropped":
            assert priority == Priority.STATUS
        elif priority == Priority.TELEMETRY:
            assert body["ts"] == ts_of[seq]


def test_the_bound_is_exceeded_rather_than_an_alarm_lost(db):
    max_bytes = 64 * 1024
    with Outbox(db, max_bytes=max_bytes) as box:
        for i in range(400):
            box.add(alarm(i), Priority.STATUS)  # STATUS: same protection, without a commit per record
        box.commit()
        stats = box.stats()
    assert stats["bytes_used"] > max_bytes
    assert stats["dropped_total"] == 0
    assert sorted(raw_rows(db)) == list(range(1, 401))


def test_the_wal_stays_bounded_while_records_flow_through(db):
    wal = db.parent / "outbox.db-wal"
    biggest = 0
    with Outbox(db, max_bytes=1 << 20) as box:
        for round_ in range(60):
            for i in range(200):
                box.add(reading(round_ * 200 + i), Priority.TELEMETRY)
            box.commit()
            box.ack(r.seq for r in box.fetch({}, 200))
            biggest = max(biggest, wal.stat().st_size)
    # 12,000 records (~3 MB) passed through; the WAL is checkpointed every 100 pages and truncated,
    # so it never holds more than that plus one commit's frames.
    assert biggest < 1 << 20


def test_a_reader_thread_drains_while_the_writer_commits(db):
    """The uplink's shape: one thread writes and deletes what the other reports acknowledged."""
    total = 3000
    acked: queue.Queue = queue.Queue()
    errors: list[Exception] = []
    box = Outbox(db, commit_max_records=100)

    def writer() -> None:
        try:
            for i in range(total):
                box.add(reading(i), Priority.TELEMETRY)
                while not acked.empty():
                    box.ack(acked.get_nowait())
                if box.commit_due():
                    box.commit()
            box.commit()
        except Exception as exc:  # noqa: BLE001 - handed to the test thread, which fails on it
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []
    cursor: dict[int, int] = {}
    deadline = time.monotonic() + 30
    while len(seen) < total and time.monotonic() < deadline and not errors:
        rows = box.fetch(cursor, 250)
        if rows:
            seen += [r.seq for r in rows]
            cursor[Priority.TELEMETRY] = rows[-1].seq
            assert [r.body["mono"] for r in rows] == [r.seq - 1 + 123456 for r in rows]
            acked.put([r.seq for r in rows])
        else:
            thread.join(0.005)  # nothing committed yet: give the writer a moment
    thread.join(10)
    assert errors == []
    assert seen == list(range(1, total + 1))
    while not acked.empty():
        box.ack(acked.get_nowait())
    box.close()
    assert raw_rows(db) == {}
