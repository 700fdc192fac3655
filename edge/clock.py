"""Time for a gateway without a real-time clock (docs/design.md, Time).

A Raspberry Pi boots with whatever time ``fake-hwclock`` saved at the last
shutdown (or 1970) and only learns the real time once NTP answers — which may
be hours later in a plant room with no uplink. The agent never waits for that:
every record is stamped with

* ``ts``     — the wall clock, epoch milliseconds (possibly wrong),
* ``synced`` — whether the kernel considered the wall clock synchronised,
* ``boot``   — the kernel's boot id, and
* ``mono``   — milliseconds since boot on ``CLOCK_BOOTTIME``.

When the clock first becomes synchronised during this boot, :class:`Clock`
remembers ``offset = wall − mono``. Because ``CLOCK_BOOTTIME`` never jumps
(not when NTP steps the wall clock, not across suspend), ``mono + offset`` is
the true wall time of any earlier record of the same boot, and
:meth:`Clock.correct` rewrites such records before they leave the gateway.
A record from a *previous* boot that was never synced cannot be corrected —
its monotonic time is relative to a boot whose wall-clock anchor is unknown —
so it is sent unchanged and stays flagged ``synced: false``.

Why ``CLOCK_BOOTTIME`` and not ``CLOCK_MONOTONIC``: both are immune to wall
clock steps, but ``CLOCK_MONOTONIC`` stops while the system is suspended, so
``wall − monotonic`` would change across a suspend and corrupt the correction.
``CLOCK_BOOTTIME`` keeps counting, so the offset stays constant for the whole
boot. It also starts at zero at boot, which makes ``mono`` meaningful together
with ``boot``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger("linli.clock")

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"

#: adjtimex(2) return value meaning "clock not synchronised".
TIME_ERROR = 5
#: ``status`` bit set by the kernel while the clock is not synchronised.
STA_UNSYNC = 0x0040

#: How long a synchronisation answer is reused; adjtimex is cheap, but stamp() runs per reading.
SYNC_CACHE_S = 1.0


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class Timex(ctypes.Structure):
    """``struct timex`` as glibc's ``adjtimex`` symbol expects it.

    Every field the kernel declares ``long`` (``__syscall_slong_t``, ``time_t``,
    ``suseconds_t``) is ``c_long`` here, so the layout is right on 32-bit ARM
    (``long`` = 4 bytes) as well as on aarch64 and x86_64 (8 bytes). Even where a
    distribution builds with 64-bit ``time_t`` on 32-bit ARM, the plain
    ``adjtimex`` symbol is the legacy entry point with this all-``long`` layout
    (the 64-bit one is ``__adjtimex64``). The trailing padding is the 11 reserved
    ints the kernel may write into.
    """

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


def _load_adjtimex() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.adjtimex
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.POINTER(Timex)]
    func.restype = ctypes.c_int
    return func


_ADJTIMEX = _load_adjtimex()


def kernel_synced(adjtimex: Callable[..., int] | None = _ADJTIMEX) -> bool | None:
    """Ask the kernel through ``adjtimex(2)`` (read-only, no privilege needed).

    Returns True/False, or None when adjtimex cannot be called on this system.
    """
    if adjtimex is None:
        return None
    tx = Timex()  # modes = 0: query only, changes nothing
    state = adjtimex(ctypes.byref(tx))
    if state == -1:
        log.debug("adjtimex failed: %s", os.strerror(ctypes.get_errno()))
        return None
    return state != TIME_ERROR and not tx.status & STA_UNSYNC


def system_synced(adjtimex: Callable[..., int] | None = _ADJTIMEX, flag_path: str = TIMESYNCD_FLAG) -> bool:
    """Is the system clock synchronised? adjtimex first, else systemd-timesyncd's flag file."""
    answer = kernel_synced(adjtimex)
    if answer is None:
        return os.path.exists(flag_path)
    return answer


def wall_ms() -> int:
    """Wall-clock time, epoch milliseconds."""
    return time.time_ns() // 1_000_000


def boottime_ms() -> int:
    """Milliseconds since boot on ``CLOCK_BOOTTIME`` (see the module docstring for why)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    """The kernel's boot id as 32 hex digits, the form journald prints as ``_BOOT_ID``.

    If the file cannot be read, a random id is used for this process: records can
    then not be matched to another process's records of the same boot, which only
    means fewer corrections — never a wrong one.
    """
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip().replace("-", "")
    except OSError as exc:
        log.warning("cannot read the boot id from %s (%s); using a random one for this run", path, exc)
        return uuid.uuid4().hex


class Clock:
    """Wall time, boot time and synchronisation state, with correction of early records.

    The sources are injectable so that a test can drive an unsynced → synced
    transition without root (they are facts of the OS, not our logic):

    >>> state = {"synced": False, "wall": 1_000, "mono": 50}
    >>> c = Clock(synced_probe=lambda: state["synced"], wall_ms=lambda: state["wall"],
    ...           mono_ms=lambda: state["mono"], boot_id="b1", cache_s=0)
    >>> early = c.stamp()
    >>> early
    {'ts': 1000, 'synced': False, 'boot': 'b1', 'mono': 50}
    >>> state.update(synced=True, wall=1_764_201_600_000, mono=60_050)   # NTP answered a minute later
    >>> c.correct(early)["ts"]
    1764201540000

    Thread-safe: ``stamp()`` runs on every bus thread, ``correct()`` on the uplink thread.
    """

    def __init__(self, *, synced_probe: Callable[[], bool] = system_synced,
                 wall_ms: Callable[[], int] = wall_ms, mono_ms: Callable[[], int] = boottime_ms,
                 boot_id: str | None = None, cache_s: float = SYNC_CACHE_S):
        self._probe = synced_probe
        self._wall = wall_ms
        self._mono = mono_ms
        self.boot_id = boot_id if boot_id is not None else read_boot_id()
        self._cache_ms = cache_s * 1000
        self._lock = threading.Lock()
        self._synced = False
        self._checked_at: int | None = None  # mono ms of the last probe
        self._offset_ms: int | None = None

    def now_ms(self) -> int:
        """Wall-clock time, epoch milliseconds."""
        return self._wall()

    def mono_ms(self) -> int:
        """Milliseconds since boot (``CLOCK_BOOTTIME``)."""
        return self._mono()

    def synced(self) -> bool:
        """Whether the system clock is synchronised (answer reused for about a second)."""
        with self._lock:
            return self._refresh(self._mono())

    def _refresh(self, mono: int) -> bool:
        """Probe unless the cached answer is fresh; on the first sync remember the offset. Lock held."""
        if self._checked_at is None or mono - self._checked_at >= self._cache_ms:
            self._synced = bool(self._probe())
            self._checked_at = mono
            if self._synced and self._offset_ms is None:
                # Read both clocks back to back so the offset is exact to the millisecond.
                self._offset_ms = self._wall() - self._mono()
                log.info("system clock synchronised; offset wall - boottime = %d ms", self._offset_ms)
        return self._synced

    @property
    def offset_ms(self) -> int | None:
        """``wall − mono`` taken when the clock first synced in this boot, or None before that."""
        with self._lock:
            self._refresh(self._mono())
            return self._offset_ms

    def stamp(self) -> dict[str, Any]:
        """The time fields for a record taken now: ``ts``, ``synced``, ``boot``, ``mono``."""
        mono = self._mono()
        with self._lock:
            synced = self._refresh(mono)
        return {"ts": self._wall(), "synced": synced, "boot": self.boot_id, "mono": mono}

    def correct(self, body: dict[str, Any]) -> dict[str, Any]:
        """Return ``body`` with its ``ts`` corrected if it was taken unsynced earlier in this boot.

        The corrected copy has ``ts = mono + offset``, ``synced: true`` and the
        original wall time in ``ts_unsynced``. Records already synced, from
        another boot, without ``mono``, or seen before this boot's first sync are
        returned unchanged (the same object).
        """
        if body.get("synced") is not False or body.get("boot") != self.boot_id:
            return body
        mono = body.get("mono")
        if not isinstance(mono, int) or isinstance(mono, bool):
            return body
        offset = self.offset_ms
        if offset is None:
            return body
        return {**body, "ts": mono + offset, "synced": True, "ts_unsynced": body.get("ts")}
