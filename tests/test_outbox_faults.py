"""The outbox under faults: corrupt files, a full disk, and kill -9 at random moments."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from buffer import opening, store
from buffer.outbox import Outbox, OutboxError, Priority
from tests.outbox_helpers import raw_rows

T0 = 1_764_201_600_000
WALL = 1_795_756_500_000  # 2026-11-27T05:15:00Z
STAMP = "20261127T051500Z"
PAD = "x" * 1000
WRITER = Path(__file__).with_name("outbox_writer.py")


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def reading(i: int) -> dict:
    return {"kind": "reading", "sensor": "meter-1", "quantity": "volume", "value": i / 10, "unit": "m3",
            "quality": "good", "ts": T0 + i * 1000, "synced": True, "boot": "3f2a9c1e", "mono": i}


def note(i: int) -> dict:
    return {"kind": "note", "n": i, "pad": PAD}




def pragma(path: Path, name: str):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchall()
    finally:
        conn.close()


def explained(rows: dict[int, tuple[int, dict]], next_seq: int, acked=()) -> list[dict]:
    """Assert every seq below next_seq is stored, acked or covered by a dropped record; return those records."""
    dropped = [body for _, body in rows.values() if body.get("kind") == "dropped"]
    covered = set(rows) | set(acked)
    for body in dropped:
        covered |= set(range(body["seq_from"], body["seq_to"] + 1))
    assert set(range(1, next_seq)) <= covered
    return dropped


def filled_outbox(path: Path, n: int) -> int:
    """An outbox with n committed readings, closed (so everything is in the main file); returns next_seq."""
    with Outbox(path) as box:
        for i in range(n):
            box.add(reading(i), Priority.TELEMETRY)
        box.commit()
        return box.stats()["next_seq"]


# --- corrupt files -----------------------------------------------------------------------------
def check_fresh_outbox_after_corruption(box: Outbox, path: Path, expected_seq: int, moved_name: str) -> None:
    assert box.recovered_from_corruption == path.with_name(moved_name)
    assert box.recovered_from_corruption.exists()
    rows = box.fetch({}, 10)
    assert [(r.seq, r.priority) for r in rows] == [(expected_seq, Priority.ALARM)]
    body = rows[0].body
    assert {k: body[k] for k in ("kind", "alarm", "state", "severity", "value", "limit", "moved_to")} == {
        "kind": "alarm", "alarm": "gateway/outbox-corrupt", "state": "raised", "severity": "critical",
        "value": None, "limit": None, "moved_to": moved_name}
    assert body["ts"] == WALL
    assert moved_name in body["message"]
    box.add(reading(1), Priority.TELEMETRY)
    assert box.commit() == [expected_seq + 1]
    assert pragma(path, "integrity_check") == [("ok",)]


def damaged_outbox(path: Path, seed: int = 1) -> bytes:
    """An outbox whose header still says so, every page after it garbage: nothing of it can be read."""
    filled_outbox(path, 50)
    head = path.read_bytes()[:100]
    damaged = head + random.Random(seed).randbytes(20_000)
    path.write_bytes(damaged)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return damaged


@pytest.mark.parametrize("content, what", [
    (random.Random(1).randbytes(20_000), "not an SQLite database"),
    (b"[gateway]\nid = \"gw-1\"\n", "a text file"),
    (b"SQLite format 3\x00" + bytes(52) + (0x12345678).to_bytes(4, "big") + bytes(4000), "another program"),
])
def test_a_file_that_is_not_an_outbox_is_refused_and_left_byte_for_byte(tmp_path, content, what):
    path = tmp_path / "outbox.db"
    path.write_bytes(content)
    os.utime(path, ns=(WALL * 1_000_000,) * 2)
    with pytest.raises(opening.ForeignFile, match=what):
        Outbox(path, wall_ms=lambda: WALL)
    assert path.read_bytes() == content and path.stat().st_mtime_ns == WALL * 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_a_damaged_outbox_is_moved_aside_and_seq_starts_from_the_clock(tmp_path):
    path = tmp_path / "outbox.db"
    damaged = damaged_outbox(path)
    os.utime(path, ns=(WALL * 1_000_000 - 3_600 * 10**9,) * 2)  # written an hour before "now"
    with Outbox(path, wall_ms=lambda: WALL) as box:
        check_fresh_outbox_after_corruption(box, path, WALL, f"outbox.db.corrupt-{STAMP}")
    assert (tmp_path / f"outbox.db.corrupt-{STAMP}").read_bytes() == damaged


def test_a_clock_behind_the_damaged_file_cannot_make_seqs_repeat(tmp_path):
    path = tmp_path / "outbox.db"
    damaged_outbox(path)
    later_ms = WALL + 86_400_000
    os.utime(path, ns=(later_ms * 1_000_000,) * 2)  # the clock went back (no RTC, no sync yet)
    with Outbox(path, wall_ms=lambda: WALL) as box:
        check_fresh_outbox_after_corruption(box, path, later_ms, f"outbox.db.corrupt-{STAMP}")


def test_an_emptied_outbox_goes_on_above_every_seq_it_could_have_sent(tmp_path):
    path = tmp_path / "outbox.db"
    sent = filled_outbox(path, 30) - 1
    path.write_bytes(b"")                                  # a power cut during creation, a careless truncate
    os.utime(path, ns=(WALL * 1_000_000,) * 2)
    with Outbox(path, wall_ms=lambda: WALL) as box:
        rows = box.fetch({}, 10)
        assert rows[0].body["alarm"] == "gateway/outbox-corrupt" and "empty file" in rows[0].body["message"]
        assert rows[0].seq >= WALL > sent
        assert box.add(reading(1), Priority.TELEMETRY) > rows[0].seq


def test_a_meta_out_of_range_goes_on_above_every_stored_seq(tmp_path):
    path = tmp_path / "outbox.db"
    filled_outbox(path, 30)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = -5 WHERE key = 'next_seq'")
    conn.commit()
    conn.close()
    with Outbox(path, wall_ms=lambda: WALL) as box:
        rows = box.fetch({}, 100)
        assert rows[0].body["alarm"] == "gateway/outbox-corrupt" and "not above" in rows[0].body["message"]
        assert rows[0].seq >= WALL
        assert max(r.seq for r in rows if r.priority == Priority.TELEMETRY) == 30   # stored records are still sent
        assert not [r for r in rows if r.body.get("kind") == "dropped"]    # the alarm explains the jump


def test_a_file_truncated_mid_page_is_moved_aside_and_its_seq_recovered(tmp_path):
    path = tmp_path / "outbox.db"
    next_seq = filled_outbox(path, 3000)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2 + 100)  # mid-page: 100 bytes into a page
    with Outbox(path, wall_ms=lambda: WALL) as box:
        check_fresh_outbox_after_corruption(box, path, next_seq, f"outbox.db.corrupt-{STAMP}")
    assert (tmp_path / f"outbox.db.corrupt-{STAMP}").stat().st_size == size // 2 + 100


def test_a_damaged_page_is_moved_aside_with_its_wal_and_the_seq_recovered(tmp_path):
    path = tmp_path / "outbox.db"
    next_seq = filled_outbox(path, 3000)
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    meta_root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'meta'").fetchone()[0]
    conn.close()
    victim = pages // 2
    assert victim not in (1, meta_root)
    with path.open("r+b") as f:
        f.seek((victim - 1) * page_size)
        f.write(random.Random(2).randbytes(page_size))
    wal = tmp_path / "outbox.db-wal"
    wal.write_bytes(b"")  # an (empty) WAL next to it must travel with the database
    with Outbox(path, wall_ms=lambda: WALL) as box:
        check_fresh_outbox_after_corruption(box, path, next_seq, f"outbox.db.corrupt-{STAMP}")
    assert (tmp_path / f"outbox.db.corrupt-{STAMP}-wal").exists()


def test_a_wal_without_its_database_is_moved_aside_not_replayed_into_a_new_one(tmp_path):
    path = tmp_path / "outbox.db"
    wal = tmp_path / "outbox.db-wal"
    box = Outbox(path)
    box.add(reading(1), Priority.TELEMETRY)
    box.commit()
    wal_bytes = wal.read_bytes()
    box.close()
    path.unlink()
    wal.write_bytes(wal_bytes)
    with Outbox(path, wall_ms=lambda: WALL) as box:
        assert box.recovered_from_corruption == tmp_path / f"outbox.db.corrupt-{STAMP}"
        rows = box.fetch({}, 10)
        assert len(rows) == 1 and rows[0].body["alarm"] == "gateway/outbox-corrupt"
        assert rows[0].seq >= WALL
        assert "write-ahead log" in rows[0].body["message"]
    assert (tmp_path / f"outbox.db.corrupt-{STAMP}-wal").read_bytes() == wal_bytes
    assert not (tmp_path / f"outbox.db.corrupt-{STAMP}").exists()


def test_two_corrupt_files_in_the_same_second_get_different_names(tmp_path):
    path = tmp_path / "outbox.db"
    for seed in range(2):
        (tmp_path / "again").mkdir(exist_ok=True)
        damaged = damaged_outbox(tmp_path / "again" / "outbox.db", seed)
        path.write_bytes(damaged)
        with Outbox(path, wall_ms=lambda: WALL):
            pass
    names = sorted(p.name for p in tmp_path.iterdir()
                   if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm")))
    assert names == [f"outbox.db.corrupt-{STAMP}", f"outbox.db.corrupt-{STAMP}-1"]


def test_a_sound_file_is_not_touched(tmp_path):
    path = tmp_path / "outbox.db"
    filled_outbox(path, 10)
    with Outbox(path) as box:
        assert box.recovered_from_corruption is None
        assert len(box.fetch({}, 100)) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["outbox.db"]


# --- a full disk -------------------------------------------------------------------------------
def fill_until_full(box: Outbox, start: int = 0) -> tuple[list[int], int]:
    """Add 1 kB status notes in commits of 10 until a commit fails for space; returns (seqs committed, notes added)."""
    committed: list[int] = []
    i = start
    while not box.disk_full:
        for _ in range(10):
            box.add(note(i), Priority.STATUS)
            i += 1
        committed += box.commit()
        assert i < 10_000, "the page limit never filled the file"
    return committed, i


def test_a_full_disk_keeps_records_in_memory_until_acks_free_space(tmp_path):
    path = tmp_path / "outbox.db"
    clock = FakeClock()
    box = Outbox(path, clock=clock, commit_interval=1.0, commit_max_records=15, _max_page_count=40)
    committed, added = fill_until_full(box)
    pending = box.stats()["pending"]
    assert pending == added - len(committed) > 0
    assert box.stats()["disk_full"] is True
    # The retry is paced by the interval even though more than commit_max_records wait.
    assert box.commit_due() is False and box.seconds_until_due() == 1.0
    for j in range(added, added + 20):
        box.add(note(j), Priority.STATUS)
    assert box.commit() == []  # still full: nothing to drop (no telemetry), nothing raised
    assert box.stats()["pending"] == pending + 20

    acked = committed[:len(committed) // 2]
    box.ack(acked)
    clock.now += 1.0
    assert box.commit_due() is True
    more = box.commit()
    assert box.disk_full is False and box.stats()["pending"] == 0
    assert committed + more == list(range(1, box.stats()["next_seq"]))
    rows = raw_rows(path)
    assert sorted(rows) == sorted(set(committed + more) - set(acked))
    notes = sorted(body["n"] for _, body in rows.values())
    acked_notes = set(range(len(acked)))  # notes 0..k-1 got seqs 1..k
    assert notes == sorted(set(range(added + 20)) - acked_notes)
    assert box.stats()["dropped_total"] == 0
    box.close()


def test_a_full_disk_drops_the_oldest_committed_telemetry_and_says_so(tmp_path):
    path = tmp_path / "outbox.db"
    box = Outbox(path, _max_page_count=60)  # max_bytes stays 64 MiB: only the "disk" can be full here
    ts_of: dict[int, int] = {}
    n = 0
    while box.stats()["dropped_total"] == 0:
        batch = [reading(n + k) for k in range(50)]
        n += 50
        for record in batch:
            box.add(record, Priority.TELEMETRY)
        seqs = box.commit()
        assert box.stats()["pending"] == 0  # room was made within the same commit
        ts_of.update((seq, record["ts"]) for seq, record in zip(seqs[-50:], batch, strict=True))
        assert n < 20_000, "the page limit never filled the file"
    assert box.disk_full is False
    stats = box.stats()
    box.close()
    rows = raw_rows(path)
    dropped = explained(rows, stats["next_seq"])
    assert len(dropped) == 1
    gone = sorted(seq for seq in ts_of if seq not in rows)
    assert dropped[0]["count"] == len(gone) == stats["dropped_total"]
    assert (dropped[0]["seq_from"], dropped[0]["seq_to"]) == (1, gone[-1]) and gone == list(range(1, gone[-1] + 1))
    assert (dropped[0]["ts_from"], dropped[0]["ts_to"]) == (ts_of[1], ts_of[gone[-1]])
    assert all(seq in rows for seq in ts_of if seq > gone[-1])  # every newer reading is there


def test_pending_telemetry_beyond_the_memory_bound_is_shed_oldest_first_and_reported(tmp_path):
    path = tmp_path / "outbox.db"
    clock = FakeClock()
    box = Outbox(path, clock=clock, commit_max_records=1_000_000, max_pending=100, _max_page_count=30)
    committed, added = fill_until_full(box)
    status_pending = box.stats()["pending"]
    for i in range(500):
        box.add(reading(i), Priority.TELEMETRY)
        assert box.stats()["pending"] <= 100 + status_pending
    box.ack(committed)
    assert box.commit()
    assert box.disk_full is False and box.stats()["pending"] == 0
    stats = box.stats()
    box.close()
    rows = raw_rows(path)
    dropped = explained(rows, stats["next_seq"], acked=committed)
    kept = sorted(body["ts"] for prio, body in rows.values() if prio == Priority.TELEMETRY)
    shed = sorted({reading(i)["ts"] for i in range(500)} - set(kept))
    assert len(kept) + len(shed) == 500 and len(kept) <= 100
    assert max(shed) < min(kept)  # the oldest went
    assert sum(d["count"] for d in dropped) == len(shed) == stats["dropped_total"]
    assert min(d["ts_from"] for d in dropped) == shed[0] and max(d["ts_to"] for d in dropped) == shed[-1]
    for d in dropped:  # a range may hold status records that were kept; every telemetry seq in it went
        stored = [seq for seq in rows if d["seq_from"] <= seq <= d["seq_to"]]
        assert all(rows[seq][0] != Priority.TELEMETRY for seq in stored)
        assert d["seq_to"] - d["seq_from"] + 1 == d["count"] + len(stored)
        assert d["reason"] == "memory"
    assert sorted(body["n"] for _, body in rows.values() if body.get("kind") == "note") == \
        sorted(set(range(added)) - set(range(len(committed))))


def test_on_a_full_disk_an_alarm_is_still_stored_and_telemetry_waits_in_memory_where_it_is_sent(tmp_path, caplog):
    path = tmp_path / "outbox.db"
    clock = FakeClock()
    rng = random.Random(3)
    box = Outbox(path, clock=clock, commit_max_records=1_000_000, _max_page_count=20)
    for i in range(600):  # ~150 kB that does not compress: more than the ~14 free pages can take
        box.add({**reading(i), "noise": rng.randbytes(120).hex()}, Priority.TELEMETRY)
    assert box.commit() == [] and box.disk_full is True
    alarm = {"kind": "alarm", "alarm": "bed-1/out-of-bed", "state": "raised", "severity": "critical",
             "value": True, "limit": None, "ts": T0, "message": "out of bed"}
    seq = box.add(alarm, Priority.ALARM)
    assert raw_rows(path) == {seq: (Priority.ALARM, alarm)}                 # on disk, not behind the readings
    fetched = box.fetch({}, 10)
    assert [(r.seq, r.priority) for r in fetched[:2]] == [(seq, Priority.ALARM), (1, Priority.TELEMETRY)]
    assert box.stats()["pending"] == 600 and box.stats()["depth"] == 601
    with caplog.at_level(logging.ERROR, logger="buffer.outbox"):
        box.close()  # must not raise
    assert "600 records not stored" in caplog.text
    with Outbox(path) as again:                                             # the next start says so
        gap = [r.body for r in again.fetch({}, 10) if r.body.get("kind") == "dropped"]
    assert len(gap) == 1 and gap[0]["reason"] == "restart"
    assert gap[0]["seq_from"] <= 1 and gap[0]["seq_to"] >= 600 and gap[0]["count"] >= 600


def test_an_alarm_that_cannot_be_stored_at_all_is_sent_from_memory(tmp_path):
    path = tmp_path / "outbox.db"
    box = Outbox(path, _max_page_count=20)
    pad = random.Random(5).randbytes(60_000).hex()    # one alarm bigger than the whole "disk"
    seq = box.add({"kind": "alarm", "alarm": "x/y", "state": "raised", "pad": pad}, Priority.ALARM)  # no raise
    assert box.disk_full is True and raw_rows(path) == {}
    assert [r.seq for r in box.fetch({}, 10)] == [seq]
    box.ack([seq])
    assert box.fetch({}, 10) == [] and box.stats()["pending"] == 0
    box.close()


# --- kill -9 -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_at_random_moments_never_loses_a_committed_seq_nor_breaks_the_file(tmp_path):
    """Every seq ever given is stored, acknowledged, or explained by a dropped record; none is given twice."""
    path = tmp_path / "outbox.db"
    rng = random.Random(20261127)
    acked: set[int] = set()
    gaps: set[int] = set()
    seen: set[int] = set()
    kills_after_commits = 0
    for run in range(40):
        state_key = f"run-{run}"
        proc = subprocess.Popen([sys.executable, str(WRITER), str(path), str(rng.randrange(2**32)), state_key],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = b""
        if run % 2 == 0:
            head = proc.stdout.readline()  # it has committed once: kill it somewhere in the stream
            delay = rng.uniform(0.0, 0.15)
        else:
            delay = rng.uniform(0.0, 0.35)  # anywhere from interpreter start-up to mid-stream
        try:
            proc.wait(timeout=delay)
            pytest.fail(f"the writer ended by itself: {proc.stderr.read().decode()}")
        except subprocess.TimeoutExpired:
            pass
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        out = head + out
        assert proc.returncode == -signal.SIGKILL
        printed: list[int] = []
        for line in out.decode().splitlines(keepends=True):
            if not line.endswith("\n"):
                continue  # cut by the kill mid-line: not counted
            printed += map(int, line.split())

        assert pragma(path, "integrity_check") == [("ok",)], f"run {run}"
        with Outbox(path) as box:  # creates the schema if the kill came before the writer did
            assert box.recovered_from_corruption is None
            rows = raw_rows(path)
            stats = box.stats()
            state = box.get_state(state_key)
            assert set(printed) <= set(rows)                       # what a commit returned is on disk
            assert not (set(rows) & acked)                          # no seq given twice
            # every seq below next_seq accounted for; earlier runs' dropped records were acknowledged too
            gaps |= {seq for d in explained(rows, stats["next_seq"], acked=acked | gaps)
                     for seq in range(d["seq_from"], d["seq_to"] + 1)}
            # state and records were committed in the same transactions
            records = [s for s, (_, body) in rows.items() if body.get("kind") != "dropped" and s not in seen]
            assert (state or {"added": 0})["added"] == len(records)
            kills_after_commits += bool(printed)
            seen |= set(rows)
            acked |= set(rows)
            box.ack(rows)  # keep the file small for the next run; the seqs must still never repeat
    assert kills_after_commits >= 20, "too few runs got as far as committing"
    assert len(raw_rows(path)) == 0


def test_enospc_and_sqlite_full_count_as_a_full_disk_other_errors_do_not(tmp_path):
    assert store.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not store.is_disk_full(OSError(errno.EIO, "Input/output error"))
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 50)
    with pytest.raises(sqlite3.OperationalError) as other:
        conn.execute("SELECT * FROM missing")
    conn.close()
    assert store.is_disk_full(full.value)
    assert not store.is_disk_full(other.value)


# --- no file at all ------------------------------------------------------------------------------
def test_without_a_usable_file_records_live_in_memory_are_sent_and_reach_the_file_once_it_works(tmp_path):
    blocker = tmp_path / "spool"
    blocker.write_text("a file where the outbox's folder should be")
    path = blocker / "outbox.db"
    clock = FakeClock()
    box = Outbox(path, clock=clock, wall_ms=lambda: WALL, memory_fallback=True)
    assert box.unavailable and "spool" in box.unavailable
    seq = box.add(reading(1), Priority.TELEMETRY)
    alarm = {"kind": "alarm", "alarm": "bed-1/out-of-bed", "state": "raised", "severity": "critical", "ts": T0}
    with pytest.raises(OutboxError, match="cannot commit"):
        box.add(alarm, Priority.ALARM)                  # not stored: said so, and kept to be sent
    rows = box.fetch({}, 10)
    assert [r.body.get("alarm") for r in rows] == ["gateway/outbox-unavailable", "bed-1/out-of-bed", None]
    assert rows[0].body["state"] == "raised" and rows[0].seq >= WALL and seq > rows[0].seq
    stats = box.stats()
    assert stats["unavailable"] == box.unavailable and stats["pending"] == 3 and stats["depth"] == 3
    assert box.get_state("rules") is None

    blocker.unlink()                                     # the file system is usable again
    clock.now += 30.0
    written = box.commit()
    assert box.unavailable is None and len(written) == 3     # the three held in memory ...
    later = box.add(reading(2), Priority.TELEMETRY)
    box.close()
    rows = raw_rows(path)
    assert set(written) | {later} < set(rows) and len(rows) == 5    # ... the alarm's clearing, the new one
    assert [body["state"] for _, body in rows.values() if body.get("alarm") == "gateway/outbox-unavailable"] == \
        ["raised", "cleared"]
    with Outbox(path) as again:                          # the file goes on above every seq memory used
        assert again.add(reading(3), Priority.TELEMETRY) > later


def test_without_memory_fallback_an_unusable_file_is_an_error(tmp_path):
    (tmp_path / "spool").write_text("x")
    with pytest.raises(OutboxError, match="cannot create the outbox directory"):
        Outbox(tmp_path / "spool" / "outbox.db")


def test_a_lost_write_ahead_log_never_makes_a_seq_repeat(tmp_path):
    """Each seq reservation is checkpointed into the file: a card that loses the log keeps the reservation."""
    path = tmp_path / "outbox.db"
    proc = subprocess.Popen([sys.executable, str(WRITER), str(path), "3", "k"], stdout=subprocess.PIPE)
    printed = [int(seq) for seq in proc.stdout.readline().split()]      # committed, and possibly sent
    proc.kill()
    proc.communicate()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)                # lost with the card's last writes
    with Outbox(path) as box:
        gap = [r.body for r in box.fetch({}, 100) if r.body.get("reason") == "restart"]
        assert box.add(reading(1), Priority.TELEMETRY) > max(printed)
    assert gap and gap[0]["seq_from"] <= min(printed) and gap[0]["seq_to"] >= max(printed)
