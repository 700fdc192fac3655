"""Opening the outbox file: what was found there, and where seqs go on so that none is ever reused.

* Anything that is not recognisably an outbox (another program's file, a
  directory, a text file a typo pointed at) is refused and left untouched
  (:class:`ForeignFile`).
* A damaged outbox is moved aside (:func:`store.move_aside`) and a fresh one started
  above any seq it may have given: what can be salvaged from it, else the clock in
  milliseconds, which is far ahead of any count of records a gateway has made.
  An alarm says so.
* An empty file where an outbox should be (a power cut during creation, a careless
  ``touch``) and a ``meta`` table whose next seq is not above every stored record
  are treated the same way: the seqs go on from the clock, with an alarm.
* After a crash, the seqs between the lowest one that may have lived only in
  memory and the end of the reserved block are announced by a ``dropped`` record
  with ``reason: "restart"``; ``count`` is then an upper bound (delivered records
  cannot be told apart without a write per record — decision 0005).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buffer import fileinfo, store
from buffer.errors import ForeignFile, OutboxError

log = logging.getLogger("buffer.outbox")

CORRUPT_ALARM = "gateway/outbox-corrupt"
ALARM, STATUS = 0, 1   # Priority.ALARM and Priority.STATUS


@dataclass
class Opened:
    """The writer's connection and what the outbox must know, or announce, before its first record."""

    conn: sqlite3.Connection
    next_seq: int
    dropped_total: int
    moved_to: Path | None = None
    announcements: list[tuple[dict[str, Any], int]] = field(default_factory=list)   # (record, priority)


def open_outbox(path: Path, *, max_bytes: int, now_ms: int, max_page_count: int | None) -> Opened:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutboxError(f"cannot create the outbox directory {path.parent}: {exc.strerror}") from None
    # The clock in ms, or the file's own time if the clock is behind it (no RTC, not yet synced) — read
    # before any check opens the file (an SQLite reader may create its -wal and -shm companions).
    from_clock = max(now_ms, store.last_modified_ms(path))
    found = foreign(path)
    if found:
        raise ForeignFile(f"{path} is {found}, not an outbox; the agent leaves it untouched "
                          f"(point [buffer] path elsewhere)")
    problem = store.integrity_problem(path)
    moved_to = None
    existed = path.exists()
    first_seq = from_clock if existed else 1   # an existing file that holds no outbox goes on from the clock
    if problem is not None:
        salvaged = store.salvage_next_seq(path)
        first_seq = salvaged if salvaged is not None else from_clock
        moved_to = store.move_aside(path, now_ms)
        existed = False
        log.warning("outbox %s is unusable (%s); moved aside to %s", path, problem, moved_to.name)
    conn, created = store.open_writer(path, first_seq=first_seq, created_ms=now_ms, max_bytes=max_bytes,
                                      max_page_count=max_page_count)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        opened = Opened(conn, meta["next_seq"], meta["dropped_total"], moved_to)
        if problem is not None:
            opened.announcements.append((_alarm(
                f"the outbox was unusable ({problem}); it was moved aside to {moved_to.name} and a fresh one "
                f"started at seq {first_seq} ("
                + ("recovered from the damaged file" if salvaged is not None
                   else "taken from the clock because the damaged file gave none")
                + "); records not yet sent may be in it", now_ms, moved_to=moved_to.name), ALARM))
        elif created and existed:
            opened.announcements.append((_alarm(
                f"the outbox {path.name} was an empty file; seqs go on from the clock at {first_seq} so "
                f"that none is reused", now_ms), ALARM))
        elif not _check_meta(conn, opened, from_clock, now_ms):
            _announce_restart_gap(conn, opened, meta)   # after a jump from the clock the alarm explains it all
    except BaseException:
        conn.close()
        raise
    return opened


def foreign(path: Path) -> str | None:
    """What stands at ``path`` if it is not an outbox the agent may open or move aside (:mod:`buffer.fileinfo`)."""
    return fileinfo.describe_foreign(path)


def _check_meta(conn: sqlite3.Connection, opened: Opened, from_clock: int, now_ms: int) -> bool:
    """A next seq that is not above every stored record (a tampered or damaged meta) goes on from the clock.

    True when it did."""
    highest = store.highest_stored_seq(conn)
    if opened.next_seq > highest and opened.next_seq >= 1:
        return False
    found = opened.next_seq
    opened.next_seq = max(from_clock, highest + 1)
    conn.execute("UPDATE meta SET value = ? WHERE key IN ('next_seq', 'unsaved_from')", (opened.next_seq,))
    log.error("outbox: next seq %d is not above the highest stored seq %d; going on at %d",
              found, highest, opened.next_seq)
    opened.announcements.append((_alarm(
        f"the outbox's next seq ({found}) was not above its highest record ({highest}); seqs go on from the "
        f"clock at {opened.next_seq} so that none is reused", now_ms), ALARM))
    return True


def _announce_restart_gap(conn: sqlite3.Connection, opened: Opened, meta: dict[str, int]) -> None:
    unsaved_from = meta.get("unsaved_from", opened.next_seq)
    reserved_to = opened.next_seq
    if not 1 <= unsaved_from < reserved_to:
        return
    stored = conn.execute("SELECT count(*) FROM outbox WHERE seq >= ? AND seq < ?",
                          (unsaved_from, reserved_to)).fetchone()[0]
    stored += conn.execute("SELECT coalesce(sum(count), 0) FROM chunk WHERE first_seq >= ? AND last_seq < ?",
                           (unsaved_from, reserved_to)).fetchone()[0]
    at_most = reserved_to - unsaved_from - stored
    if at_most <= 0:
        return
    log.warning("outbox: the last run ended without a clean stop; seqs %d..%d not stored may be lost "
                "(at most %d records)", unsaved_from, reserved_to - 1, at_most)
    opened.announcements.append(({"kind": "dropped", "reason": "restart", "count": at_most,
                                  "seq_from": unsaved_from, "seq_to": reserved_to - 1,
                                  "ts_from": None, "ts_to": None}, STATUS))


def _alarm(message: str, now_ms: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "alarm", "alarm": CORRUPT_ALARM, "state": "raised", "severity": "critical",
            "value": None, "limit": None, "ts": now_ms, "message": message, **extra}
