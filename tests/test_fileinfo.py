"""Telling an outbox from anything else at its path, from the file's type and first 100 bytes, touching nothing."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from buffer import store
from buffer.fileinfo import HEADER_BYTES, describe_foreign, foreign
from buffer.outbox import Outbox, Priority
from buffer.store import APPLICATION_ID, SCHEMA_VERSION
from tests.untouched import snapshot

ROOT = Path(__file__).resolve().parent.parent
ALARM = {"kind": "alarm", "alarm": "pump-pressure/low", "state": "raised", "ts": 1_764_201_600_000}


def another_programs_database(path: Path, application_id: int) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.execute(f"PRAGMA application_id={application_id}")
    conn.commit()
    conn.close()
    return path


def header(path: Path) -> bytes:
    return path.read_bytes()[:HEADER_BYTES]


# --- what is an outbox ----------------------------------------------------------------------------------------
def test_nothing_there_an_empty_file_and_a_closed_outbox_are_outboxes(tmp_path):
    assert describe_foreign(tmp_path / "absent.db") is None
    assert describe_foreign(tmp_path / "no-such-folder" / "outbox.db") is None
    (tmp_path / "empty.db").touch()      # a power cut while the outbox was being created
    assert describe_foreign(tmp_path / "empty.db") is None
    with Outbox(tmp_path / "outbox.db") as box:
        box.add(ALARM, Priority.ALARM)
    assert int.from_bytes(header(tmp_path / "outbox.db")[68:72], "big") == APPLICATION_ID
    assert describe_foreign(tmp_path / "outbox.db") is None


def test_a_running_agents_fresh_outbox_whose_header_is_still_in_its_wal_is_an_outbox(tmp_path):
    """``linli config check`` (and a reload) look at the outbox while the agent holds it open."""
    # The moment between the schema's commit and the first seq reservation (which checkpoints).
    conn, created = store.open_writer(tmp_path / "outbox.db", first_seq=1, created_ms=0, max_bytes=2**20)
    try:
        assert created
        assert header(tmp_path / "outbox.db")[68:72] == bytes(4), "the application id is only in the WAL so far"
        assert (tmp_path / "outbox.db-wal").stat().st_size > 0
        assert describe_foreign(tmp_path / "outbox.db") is None
    finally:
        conn.close()


def test_an_outbox_left_by_a_killed_agent_is_an_outbox(tmp_path):
    db = tmp_path / "outbox.db"
    script = ("import os, sys; from buffer.outbox import Outbox, Priority; "
              f"box = Outbox(sys.argv[1]); box.add({ALARM!r}, Priority.ALARM); os._exit(9)")
    done = subprocess.run([sys.executable, "-c", script, str(db)], cwd=ROOT, timeout=60)
    assert done.returncode == 9 and (tmp_path / "outbox.db-wal").exists()
    assert describe_foreign(db) is None


def test_a_link_to_an_outbox_is_followed_and_a_link_to_nothing_is_nothing(tmp_path):
    (tmp_path / "real.db").touch()
    (tmp_path / "outbox.db").symlink_to(tmp_path / "real.db")
    (tmp_path / "dangling.db").symlink_to(tmp_path / "not-yet.db")   # the outbox would be made at its target
    assert describe_foreign(tmp_path / "outbox.db") is None
    assert describe_foreign(tmp_path / "dangling.db") is None


# --- what is not ----------------------------------------------------------------------------------------------
def test_text_binary_and_damaged_sqlite_files_are_described(tmp_path):
    (tmp_path / "edge.toml").write_text('[gateway]\nid = "gw-1"\n')
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n" * 40)
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)))
    (tmp_path / "cut.db").write_bytes(b"SQLite format 3\x00" + bytes(20))
    (tmp_path / "chinese.txt").write_bytes(("二号楼" * 40).encode()[:101])   # a character cut at byte 100
    assert describe_foreign(tmp_path / "edge.toml") == "a text file of 22 bytes"
    assert describe_foreign(tmp_path / "passwd") == "a text file of 1280 bytes"
    assert describe_foreign(tmp_path / "image.bin") == "a file of 266 bytes that is not an SQLite database"
    assert describe_foreign(tmp_path / "cut.db") == "a truncated SQLite file of 36 bytes"
    assert describe_foreign(tmp_path / "chinese.txt") == "a text file of 101 bytes"


@pytest.mark.parametrize("application_id, shown", [(0x12345678, "0x12345678"), (0, "0x00000000")])
def test_another_programs_sqlite_database_is_described_with_its_application_id(tmp_path, application_id, shown):
    path = another_programs_database(tmp_path / "contacts.db", application_id)
    assert describe_foreign(path) == f"an SQLite database of another program (application_id {shown})"
    assert foreign(path).application_id == application_id


def test_an_outbox_of_a_newer_schema_is_described_for_this_version_would_refuse_it(tmp_path):
    conn = sqlite3.connect(tmp_path / "outbox.db")
    conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY)")
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    assert describe_foreign(tmp_path / "outbox.db") == (
        f"an outbox of a newer version of linli-edge (schema version {SCHEMA_VERSION + 1})")


def test_folders_fifos_sockets_and_devices_are_described_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "sock"))
        answers: dict = {}
        # Opening the FIFO to read would wait for a writer: the look must come back at once.
        looker = threading.Thread(target=lambda: answers.update(
            {name: describe_foreign(tmp_path / name) for name in ("fifo", "sock")}), daemon=True)
        looker.start()
        looker.join(5)
        assert not looker.is_alive(), "describe_foreign blocked on a FIFO"
    assert answers == {"fifo": "a FIFO (named pipe)", "sock": "a socket"}
    assert describe_foreign(tmp_path) == "a directory"
    assert describe_foreign("/dev/null") == "a character device"


def test_looking_changes_nothing(tmp_path):
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    another_programs_database(tmp_path / "contacts.db", 0x12345678)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "empty.db").touch()
    before = snapshot(tmp_path)
    for name in ("passwd", "contacts.db", "fifo", "empty.db"):
        describe_foreign(tmp_path / name)
    assert snapshot(tmp_path) == before
