"""Facts about the gateway for the ``health`` MQTT message.

Each fact fails soft: a missing sensor file or an odd ``/proc`` gives ``None``
for that fact, never an exception, because a health message with a gap is far
more useful than none at all.

>>> rss_kb("/nonexistent/status") is None
True
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger("linli.health")

CPU_TEMP_PATH = "/sys/class/thermal/thermal_zone0/temp"   # the SoC sensor on a Raspberry Pi
PROC_STATUS_PATH = "/proc/self/status"


def uptime_s(started_monotonic: float, now: float | None = None) -> int | None:
    """Whole seconds since the agent started (``time.monotonic()`` values)."""
    now = time.monotonic() if now is None else now
    elapsed = now - started_monotonic
    return int(elapsed) if elapsed >= 0 else None


def disk_free_bytes(path: str | os.PathLike | None) -> int | None:
    """Bytes an unprivileged process may still write on the filesystem holding ``path``.

    ``f_bavail`` rather than ``f_bfree``: the agent runs as an ordinary user and
    cannot use the blocks reserved for root, so those would overstate its room.
    """
    if path is None:
        return None
    try:
        st = os.statvfs(path)
    except OSError as exc:
        log.debug("statvfs(%s) failed: %s", path, exc)
        return None
    return st.f_bavail * st.f_frsize


def cpu_temp_c(path: str = CPU_TEMP_PATH) -> float | None:
    """SoC temperature in °C (the kernel reports millidegrees), one decimal."""
    try:
        with open(path, encoding="ascii") as f:
            millidegrees = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return round(millidegrees / 1000, 1)


def load1() -> float | None:
    """One-minute load average."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def rss_kb(path: str = PROC_STATUS_PATH) -> int | None:
    """Resident memory of this process in kB (``VmRSS`` in ``/proc/self/status``)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def clock_synced(clock) -> bool | None:
    """``clock.synced()``, or None if asking failed."""
    try:
        return bool(clock.synced())
    except Exception as exc:  # noqa: BLE001 - any failure of the probe is reported as "unknown"
        log.debug("clock sync probe failed: %s", exc)
        return None


def gather(outbox_stats: dict[str, Any], clock, started_monotonic: float, extra: dict[str, Any], *,
           outbox_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The JSON-able body of a ``health`` message.

    Keys: ``uptime_s``, ``disk_free_bytes`` (of the directory holding
    ``outbox_path``; None when not given), ``cpu_temp_c``, ``load1``,
    ``rss_kb``, ``clock_synced``, ``outbox`` (``outbox_stats`` as given), then
    the keys of ``extra``. An ``extra`` key that would hide one of these facts
    is a programming error and raises ``ValueError``.
    """
    facts: dict[str, Any] = {
        "uptime_s": uptime_s(started_monotonic),
        "disk_free_bytes": disk_free_bytes(os.path.dirname(os.path.abspath(outbox_path)) if outbox_path else None),
        "cpu_temp_c": cpu_temp_c(),
        "load1": load1(),
        "rss_kb": rss_kb(),
        "clock_synced": clock_synced(clock),
        "outbox": outbox_stats,
    }
    clash = sorted(facts.keys() & extra.keys())
    if clash:
        raise ValueError(f"health extra keys would hide gathered facts: {', '.join(clash)}")
    facts.update(extra)
    return facts
