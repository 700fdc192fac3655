"""The outbox: every record gets a seq at once and waits, in memory or on SQLite, for the broker's PUBACK.

Sparing the SD card (docs/decisions/0005-sd-card-writes.md):

* A telemetry record waits in memory (:mod:`buffer.hot`) and the uplink sends it
  from there; acknowledged within ``commit_interval`` it never touches the disk.
  Whatever is still unacknowledged then (the link is down or slow) is *spilled*:
  written in one transaction, telemetry compressed in one chunk (:mod:`buffer.chunks`).
* An alarm is committed at once, before the uplink can see it. If it cannot be
  stored (full or broken disk) it is held in memory and still sent.
* Seqs are reserved on disk in blocks of ``seq_block``. After a crash the
  unused part of the last block, and whatever lived only in memory, is announced
  by a ``dropped`` record with ``reason: "restart"`` — every seq from 1 to the
  highest arrives or is explained, and no seq is ever given twice.
* Persisted state (rules, pulse totals) is written only when it changed, at
  most every ``state_interval`` (and with every alarm).

When the file reaches ``max_bytes`` the oldest telemetry chunks are dropped —
never an alarm or a status record — and the loss is itself stored as a
``dropped`` record. A full disk does not crash the writer: records wait in
memory (bounded by ``max_pending``, then shed oldest first with a ``dropped``
record) and the spill is retried. A corrupt file found at open is moved aside
(:mod:`buffer.opening`).

>>> import tempfile, os
>>> with tempfile.TemporaryDirectory() as tmp, Outbox(os.path.join(tmp, "o.db")) as box:
...     box.add({"sensor": "meter", "value": 1.5, "ts": 1764201600123}, Priority.TELEMETRY)
...     box.add({"alarm": "meter/no-use", "state": "raised", "ts": 1764201600200}, Priority.ALARM)
...     [(row.seq, row.priority.name) for row in box.fetch({}, 10)]   # the reading is still in memory
1
2
[(2, 'ALARM'), (1, 'TELEMETRY')]
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

from buffer import opening, store
from buffer.chunks import ChunkIndex
from buffer.file_writer import Drop, FileWriter, Meta
from buffer.errors import OutboxError, OutboxRecordError
from buffer.hot import HotRecords
from buffer.records import PendingRecord, Priority, Row, dumps, serialise
from buffer.reader import DiskReader

__all__ = ["Outbox", "OutboxError", "OutboxRecordError", "Priority", "Row"]

log = logging.getLogger(__name__)

MIN_MAX_BYTES = 64 * 1024  # below this the empty schema alone is a sizeable part of the bound
#: Seqs reserved on disk at a time: one small write per block instead of one per record.
SEQ_BLOCK = 1024
#: Persisted state is written at most this often (seconds), unless an alarm commits it sooner.
STATE_INTERVAL = 60.0
#: Rows on disk that the broker acknowledged are deleted in batches, at most this late (seconds).
ACK_DELAY = 10.0
#: ... or as soon as this many rows or chunks wait to be deleted.
DELETE_BATCH = 256
#: While the disk refuses a spill, it is retried this often (seconds).
RETRY_INTERVAL = 1.0
#: While the file cannot be used, it is tried again this often (seconds).
REOPEN_INTERVAL = 30.0
CORRUPT_ALARM = opening.CORRUPT_ALARM
UNAVAILABLE_ALARM = "gateway/outbox-unavailable"


class _NoFile(OSError):
    """A write while the outbox file cannot be used (the outbox runs in memory)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Outbox:
    """A durable, bounded, prioritised queue: memory first, one SQLite file behind (see the module docstring).

    Writer methods (``add``, ``ack``, ``set_state``, ``state_due``, ``commit*``,
    ``seconds_until_due``, ``close``) belong to one thread; ``fetch``, ``get_state``
    and ``stats`` to any other thread, which gets its own connection.
    ``on_available``, when set, is called on the writer thread whenever the reader
    has something new to fetch (it must only wake the reader). ``_max_page_count``
    caps the file in pages and exists only so tests can make the disk "full".
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int = 64 * 2**20,
                 commit_interval: float = 30.0, commit_max_records: int = 2000,
                 clock: Callable[[], float] = time.monotonic, wall_ms: Callable[[], int] = _now_ms,
                 max_pending: int = 20_000, state_interval: float = STATE_INTERVAL, seq_block: int = SEQ_BLOCK,
                 memory_fallback: bool = False, _max_page_count: int | None = None):
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
        if commit_interval < 0 or commit_max_records < 1 or max_pending < 1 or seq_block < 1:
            raise ValueError("commit_interval must be >= 0; commit_max_records, max_pending, seq_block >= 1")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.commit_interval = commit_interval
        self.commit_max_records = commit_max_records
        self.max_pending = max_pending
        self.state_interval = state_interval
        self.seq_block = seq_block
        self.disk_full = False
        self.recovered_from_corruption: Path | None = None
        self.on_available: Callable[[], None] | None = None
        self._clock = clock
        self._wall_ms = wall_ms
        self._hot = HotRecords()
        self._row_acks: set[int] = set()        # alarm/status rows on disk to delete
        self._chunk_acks: set[int] = set()      # chunks (by first seq) whose every record is acknowledged
        self._acks_since: float | None = None
        self._state: dict[str, str] = {}        # state changed since last written
        self._state_written_at = self._state_offered_at = clock()
        self._retry_at = 0.0                    # while the disk refuses: no spill before this
        self._closed = False
        self._disk = DiskReader(self.path)
        self.unavailable: str | None = None     # why the file cannot be used; records then live in memory
        self._reopen_at = 0.0
        self._max_page_count = _max_page_count
        self._dropped_total = 0
        try:
            opened = self._open_file()
        except opening.ForeignFile:
            raise
        except OutboxError as exc:
            if not memory_fallback:
                raise
            self._start_in_memory(str(exc))
        else:
            self._next_seq = self._reserved_to = opened.next_seq
            self._adopt(opened)

    # --- the file, or memory when there is none ---------------------------------------------------------
    def _open_file(self) -> opening.Opened:
        return opening.open_outbox(self.path, max_bytes=self.max_bytes, now_ms=self._wall_ms(),
                                   max_page_count=self._max_page_count)

    def _adopt(self, opened: opening.Opened) -> None:
        """Take an opened file as the outbox's storage, and store what opening found first."""
        self._file = FileWriter(opened.conn, self.path, self.max_bytes)
        conn = opened.conn
        self.recovered_from_corruption = opened.moved_to
        self._unsaved_written = opened.next_seq
        self._dropped_total = max(self._dropped_total, opened.dropped_total)
        self._state_written = dict(conn.execute("SELECT key, value FROM state"))
        self._chunks = ChunkIndex(conn.execute("SELECT first_seq, last_seq, count FROM chunk"), self._chunk_members)
        tops = {int(p): conn.execute("SELECT coalesce(max(seq), 0) FROM outbox WHERE priority = ?",
                                     (int(p),)).fetchone()[0] for p in Priority}
        tops[Priority.TELEMETRY] = max(tops[Priority.TELEMETRY], self._chunks.top())
        self._disk_top = tops
        # What opening found (corruption, a restart's gap) is stored and sent first.
        for record, priority in opened.announcements:
            self.add(record, priority)
        if opened.announcements:
            self.commit()

    def _start_in_memory(self, reason: str) -> None:
        """The file cannot be used: records get seqs from the clock and live in memory, sent from there.

        The clock in milliseconds is above any seq the file can hold (decision 0005), so no seq is
        reused; the jump is explained by the ``gateway/outbox-unavailable`` alarm. The file is tried
        again every ``REOPEN_INTERVAL``.
        """
        self._file = None
        self.unavailable = reason
        first = max(self._wall_ms(), store.last_modified_ms(self.path) + 1)
        self._next_seq, self._reserved_to = first, first + 2**62     # nothing to reserve without a file
        self._unsaved_written, self._dropped_total = first, 0
        self._state_written, self._disk_top = {}, {int(p): 0 for p in Priority}
        self._chunks = ChunkIndex([], self._chunk_members)
        self._reopen_at = self._clock() + REOPEN_INTERVAL
        log.critical("the outbox %s cannot be used (%s): records wait in memory and are sent from there; "
                     "trying the file again every %g s", self.path, reason, REOPEN_INTERVAL)
        self._announce_file_state("raised", f"the outbox {self.path} cannot be used ({reason}); records are "
                                            f"kept in memory and sent from there, numbered from {first} on; "
                                            "a power cut loses them")

    def _try_reopen(self) -> None:
        """In memory: is the file usable again? Then it takes over, above every seq memory used."""
        if self._clock() < self._reopen_at:
            return
        self._reopen_at = self._clock() + REOPEN_INTERVAL
        try:
            opened = self._open_file()
        except OutboxError as exc:
            if str(exc) != self.unavailable:
                log.error("the outbox %s still cannot be used: %s", self.path, exc)
            return
        if opened.next_seq > self._next_seq:
            # A clock far behind the file's own seqs: go on above them (records already numbered keep theirs).
            log.critical("the outbox %s numbers up to %d, above the %d memory used; going on above it",
                         self.path, opened.next_seq, self._next_seq)
            self._next_seq = opened.next_seq
        self.unavailable = None
        self._reserved_to = self._next_seq        # reserve at once, above everything memory numbered
        self._adopt(opened)
        log.warning("the outbox %s can be used again; %d records held in memory are written",
                    self.path, len(self._hot))
        self._announce_file_state("cleared", f"the outbox {self.path} can be used again")

    def _announce_file_state(self, state: str, message: str) -> None:
        try:
            self.add({"kind": "alarm", "alarm": UNAVAILABLE_ALARM, "state": state, "severity": "critical",
                      "value": None, "limit": None, "ts": self._wall_ms(), "message": message}, Priority.ALARM)
        except OutboxError:
            pass   # not stored: it waits in memory and is sent from there, which is all that can be done

    # --- writer side: records ---------------------------------------------------------------------
    def add(self, record: dict, priority: Priority) -> int:
        """Give ``record`` its seq and queue it; an ALARM is committed at once. Returns the seq.

        Raises :class:`OutboxRecordError` for a record that cannot be stored. An alarm
        whose commit fails is kept in memory (and sent) and the failure raised as
        :class:`OutboxError`.
        """
        self._check_open()
        pending = serialise(record, priority)
        seq = self._take_seq()
        if pending.priority == Priority.ALARM:
            self._commit_alarm(seq, pending)
        else:
            self._hot.put(seq, pending, self._clock())
            self._shed_if_over_bound()
            self._announce()
        return seq

    def _commit_alarm(self, seq: int, pending: PendingRecord) -> None:
        try:
            self._write([(seq, pending)])
        except (sqlite3.Error, OSError) as exc:
            # Not stored, but never held back: the uplink sends it from memory (decision 0005).
            self._hot.put(seq, pending, self._clock())
            self._announce()
            if store.is_disk_full(exc):
                self.disk_full = True
            self._fail(exc, f"alarm seq {seq} could not be stored; it is sent from memory")
            return
        self._announce()

    def ack(self, seqs: Iterable[int]) -> None:
        """The broker has these seqs: forget them in memory, delete them on disk with a later commit."""
        self._check_open()
        seqs = [int(seq) for seq in seqs]
        on_disk = set(seqs) - self._hot.forget(seqs)
        for seq in on_disk:
            member, complete = self._chunks.ack(seq)
            if complete is not None:
                self._chunk_acks.add(complete)
            elif not member:
                self._row_acks.add(seq)
        if (self._row_acks or self._chunk_acks) and self._acks_since is None:
            self._acks_since = self._clock()

    def set_state(self, key: str, value: Any) -> None:
        """Persist a JSON-able ``value`` under ``key`` with a later commit, if it differs from what is stored."""
        self._check_open()
        try:
            encoded = dumps(value)
        except (TypeError, ValueError) as exc:
            raise OutboxRecordError(f"state {key!r} is not JSON-able: {exc}") from None
        key = str(key)
        if self._state_written.get(key) == encoded:
            self._state.pop(key, None)
        else:
            self._state[key] = encoded

    def state_due(self) -> bool:
        """True at most once per ``state_interval``: time for the caller to offer its state again."""
        now = self._clock()
        if now - self._state_offered_at < self.state_interval:
            return False
        self._state_offered_at = now
        return True

    # --- writer side: when to commit ----------------------------------------------------------------
    def seconds_until_due(self) -> float | None:
        """How long the writer may wait before ``commit_due``; None when nothing is pending."""
        now = self._clock()
        waits: list[float] = []
        oldest = self._hot.oldest()
        if oldest is not None:
            if len(self._hot) >= self.commit_max_records and not self.disk_full:
                waits.append(0.0)
            waits.append(max(oldest + self.commit_interval, self._retry_at) - now)
        if self._acks_since is not None:
            many = len(self._row_acks) + len(self._chunk_acks) >= DELETE_BATCH
            waits.append(0.0 if many else self._acks_since + ACK_DELAY - now)
        if self._state:
            waits.append(self._state_written_at + self.state_interval - now)
        return max(0.0, min(waits)) if waits else None

    def commit_due(self) -> bool:
        due = self.seconds_until_due()
        return due is not None and due <= 0.0

    def commit(self) -> list[int]:
        """Write everything held in memory, the acknowledged deletions and changed state; return the seqs written.

        On a full disk this never raises: see :meth:`_spill_on_full_disk`. Any other
        database failure raises :class:`OutboxError` and keeps everything in memory.
        """
        self._check_open()
        if self._file is None:
            self._try_reopen()
        held = self._hot.all()
        if not (held or self._row_acks or self._chunk_acks or self._state):
            return []
        try:
            written = self._write(held)
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc, f"{len(held)} records wait in memory")
            return self._spill_on_full_disk(held)
        if self.disk_full:
            log.warning("the outbox %s can be written again", self.path)
        self.disk_full = False
        return written

    def _spill_on_full_disk(self, held: list[tuple[int, PendingRecord]]) -> list[int]:
        """Make room and retry; failing that, save at least the alarms and status records; keep the rest."""
        if not self.disk_full:
            log.error("no space left for the outbox %s; %d records wait in memory", self.path, len(held))
        self.disk_full = True
        self._retry_at = self._clock() + RETRY_INTERVAL
        try:
            self._make_room(sum(len(r.body) for _, r in held))
            written = self._write(held)
            self.disk_full = False
            return written
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc, "")
        urgent = [(seq, r) for seq, r in held if r.priority != Priority.TELEMETRY]
        if urgent:
            try:
                return self._write(urgent)
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc, "")
        return []

    def _fail(self, exc: BaseException, what: str) -> None:
        """After a failed write (rolled back by the file writer): re-raise as OutboxError unless the disk is full."""
        if not store.is_disk_full(exc):
            self._retry_at = self._clock() + RETRY_INTERVAL
            detail = f" ({what})" if what else ""
            raise OutboxError(f"cannot commit to the outbox {self.path}: {exc}{detail}") from exc

    # --- writer side: the transaction ---------------------------------------------------------------
    def _write(self, records: list[tuple[int, PendingRecord]]) -> list[int]:
        """One transaction: deletions, ``records``, changed state, the size bound, meta. Returns the seqs written."""
        if self._file is None:
            raise _NoFile(self.unavailable)
        telemetry = [(seq, r) for seq, r in records if r.priority == Priority.TELEMETRY]
        rows = [(seq, r) for seq, r in records if r.priority != Priority.TELEMETRY]
        seqs_before = (self._next_seq, self._reserved_to)

        def meta_for(drops: list[Drop]) -> Meta | None:
            # Meta only when it must change: one page less for every spill (decision 0005). The restart's
            # dropped record subtracts what is stored, so an older unsaved_from only widens its range.
            if self._reserved_to == seqs_before[1] and not drops:
                return None
            return Meta(self._reserved_to, self._lowest_held_after({seq for seq, _ in records}),
                        self._dropped_total + sum(d.count for d in drops))

        try:
            drops, meta = self._file.write(rows, telemetry, self._row_acks, self._chunk_acks, self._state,
                                           self._take_seq_in_transaction, meta_for)
        except BaseException:
            # Seqs taken inside the transaction (dropped records) were never stored: hand them out again.
            self._next_seq, self._reserved_to = seqs_before
            raise
        self._committed(records, telemetry, drops, meta, wrote_state=True)
        return sorted([seq for seq, _ in records] + [d.seq for d in drops])

    def _make_room(self, need: int) -> None:
        """Full disk: make ``need`` bytes of room in the file (:meth:`FileWriter.make_room`)."""
        seqs_before = (self._next_seq, self._reserved_to)

        def meta_for(drops: list[Drop]) -> Meta:
            return Meta(self._reserved_to, self._unsaved_written, self._dropped_total + sum(d.count for d in drops))

        try:
            drops = self._file.make_room(need, self._row_acks, self._chunk_acks, self._take_seq_in_transaction,
                                         meta_for)
        except BaseException:
            self._next_seq, self._reserved_to = seqs_before
            raise
        self._committed([], [], drops, meta_for(drops), wrote_state=False)

    def _committed(self, records, telemetry, drops: list[Drop], meta: Meta | None, *, wrote_state: bool) -> None:
        """After COMMIT: the in-memory picture follows what is now on disk."""
        for first in [f for d in drops for f in d.firsts] + list(self._chunk_acks):
            self._chunks.remove(first)
        if telemetry:
            self._chunks.add(telemetry[0][0], telemetry[-1][0])
        # Disk tops first, then forget: a reader that misses a record in memory finds it on disk.
        tops = self._disk_top
        for seq, record in records:
            tops[record.priority] = max(tops[record.priority], seq)
        for drop in drops:
            tops[Priority.STATUS] = max(tops[Priority.STATUS], drop.seq)
        self._hot.forget([seq for seq, _ in records])
        self._row_acks.clear()
        self._chunk_acks.clear()
        self._acks_since = None
        if wrote_state and self._state:
            self._state_written.update(self._state)
            self._state.clear()
            self._state_written_at = self._clock()
        if meta is not None:
            self._unsaved_written, self._dropped_total = meta.unsaved_from, meta.dropped_total
        self._retry_at = 0.0
        if drops:
            self._announce()

    def _lowest_held_after(self, written: set[int]) -> int:
        """The lowest seq that will live only in memory once ``written`` is on disk."""
        remaining = [seq for seq, _ in self._hot.all() if seq not in written]
        return min(remaining, default=self._next_seq)

    # --- writer side: seqs ----------------------------------------------------------------------------
    def _take_seq(self, *, in_transaction: bool = False) -> int:
        """The next seq; reserves the next block on disk first when this one is used up."""
        if self._next_seq >= self._reserved_to:
            self._reserve(in_transaction)
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _take_seq_in_transaction(self) -> int:
        return self._take_seq(in_transaction=True)   # the transaction writes meta with the new boundary

    def _reserve(self, in_transaction: bool) -> None:
        reserved_to = self._next_seq + self.seq_block
        unsaved_from = min((seq for seq, _ in self._hot.all()), default=self._next_seq)
        previous = self._reserved_to
        self._reserved_to = reserved_to
        if in_transaction or self._file is None:
            return   # the caller's transaction writes meta with the new boundary (or there is no file)
        try:
            self._file.save_meta(Meta(reserved_to, unsaved_from, self._dropped_total))
            self._file.checkpoint()
            self._unsaved_written = unsaved_from
        except (sqlite3.Error, OSError) as exc:
            self._reserved_to = previous
            # Go on numbering (alarms must not stop); retried at the next seq. Only a crash before a
            # reservation succeeds could reuse seqs beyond ``previous``; see decision 0005.
            log.error("cannot reserve seqs %d.. in the outbox %s: %s", self._next_seq, self.path, exc)
            self._reserved_to = self._next_seq + 1

    def _shed_if_over_bound(self) -> None:
        """More than ``max_pending`` records in memory (spills keep failing): drop the oldest telemetry, say so."""
        if len(self._hot) <= self.max_pending:
            return
        shed = self._hot.take_oldest_telemetry(max(1, self.max_pending // 10))
        if not shed:
            return
        stamps = [r.ts for _, r in shed if r.ts is not None]
        body = {"kind": "dropped", "reason": "memory", "count": len(shed), "seq_from": shed[0][0],
                "seq_to": shed[-1][0], "ts_from": min(stamps, default=None), "ts_to": max(stamps, default=None)}
        self._dropped_total += len(shed)
        log.error("outbox %s: %d records could not be stored and were dropped from memory (seq %d..%d)",
                  self.path, len(shed), shed[0][0], shed[-1][0])
        self._hot.put(self._take_seq(), PendingRecord(Priority.STATUS, None, dumps(body)), self._clock())

    def _chunk_members(self, first: int) -> set[int]:
        return self._file.members(first)

    def _announce(self) -> None:
        if self.on_available is not None:
            self.on_available()

    # --- reader side --------------------------------------------------------------------------------
    def fetch(self, after: dict[int, int], limit: int) -> list[Row]:
        """Up to ``limit`` records with ``seq > after.get(priority, 0)``, alarms first, then by seq.

        Memory is looked at before the disk: a record a spill moves from one to the other
        meanwhile is found in one of them (the writer raises the disk's top before it forgets).
        """
        self._check_open()
        rows: list[Row] = []
        for priority in Priority:
            want = limit - len(rows)
            if want <= 0:
                break
            cursor = after.get(priority, 0)
            found = {seq: json.loads(r.body) for seq, r in self._hot.after(priority, cursor, want)}
            if self._disk_top[priority] > cursor:
                found.update(self._disk.records(int(priority), cursor, want))
            rows += [Row(seq, priority, found[seq]) for seq in sorted(found)[:want]]
        return rows

    def get_state(self, key: str, default: Any = None) -> Any:
        """The committed value stored under ``key``, or ``default`` (also while the file is unavailable)."""
        self._check_open()
        if self.unavailable is not None:
            return default
        value = self._disk.state(key)
        return default if value is None else value

    def stats(self) -> dict[str, Any]:
        """Depth, size and loss figures for health reports (on disk and ``pending`` in memory)."""
        self._check_open()
        counts, oldest, used = ({0: 0, 1: 0, 2: 0}, [], 0) if self.unavailable is not None else self._disk.figures()
        held = self._hot.count_by_priority()
        by_priority = {str(int(p)): counts.get(int(p), 0) + held.get(int(p), 0) for p in Priority}
        oldest_held, _ = self._hot.ts_range()
        if oldest_held is not None:
            oldest.append(oldest_held)
        return {"depth": sum(by_priority.values()), "depth_by_priority": by_priority, "bytes_used": used,
                "max_bytes": self.max_bytes, "next_seq": self._next_seq, "dropped_total": self._dropped_total,
                "oldest_ts": min(oldest) if oldest else None, "disk_full": self.disk_full,
                "pending": len(self._hot), "unavailable": self.unavailable}

    # --- life cycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Write what is held in memory, give back the unused seqs, close every connection. Idempotent."""
        if self._closed:
            return
        try:
            self._commit_before_close()
            if len(self._hot):
                log.error("outbox %s closed with %d records not stored (%s); the next start announces "
                          "their seqs as dropped", self.path, len(self._hot),
                          self.unavailable or "no space left on the disk")
            elif self._file is not None:
                self._release_unused_seqs()
        finally:
            self._closed = True
            self._disk.close()
            if self._file is not None:
                self._file.close()

    def _commit_before_close(self) -> None:
        if self._file is None:
            self._reopen_at = 0.0       # one last try of the file
        try:
            self.commit()
        except OutboxError as exc:
            log.error("%s", exc)

    def _release_unused_seqs(self) -> None:
        """A clean stop: everything is on disk or acknowledged, so the next start goes on at the next seq."""
        self._reserved_to = self._next_seq
        try:
            self._file.save_meta(Meta(self._next_seq, self._next_seq, self._dropped_total))
        except (sqlite3.Error, OSError) as exc:
            log.warning("outbox %s: could not record the clean stop (%s); the next start announces a gap",
                        self.path, exc)

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"the outbox {self.path} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
