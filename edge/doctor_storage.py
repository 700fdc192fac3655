"""The doctor's look at the outbox: room on its disk, the file sound, how much waits and since when.

Nothing here writes. The file is looked at by :mod:`buffer.fileinfo` (its header only),
checked by :func:`buffer.store.integrity_problem` (``PRAGMA quick_check`` on a read-only
connection) and counted on a ``mode=ro`` connection of its own: an ordinary connection
would checkpoint the write-ahead log into the file when it closes. With the agent running
the depth and the oldest record come from its health, which also counts what it holds in
memory.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
import urllib.parse
from pathlib import Path

from buffer.errors import OutboxError
from buffer.fileinfo import describe_foreign
from buffer.store import integrity_problem
from edge.doctor import FAIL, PASS, WARN, Doctor, Result, result
from edge.i18n import _

MIB = 1 << 20
#: Below this much free space SQLite cannot commit a batch: the outbox's writes fail.
MIN_FREE_BYTES = 1 * MIB
#: A record waiting longer than this means the uplink is not delivering.
OLD_RECORD_S = 3600


def _mib(size: int) -> str:
    return f"{size / MIB:.1f}"


def check_disk(doctor: Doctor) -> list[Result]:
    folder = os.path.dirname(os.path.abspath(doctor.config.buffer.path))
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)   # the agent makes the outbox's folders: their disk is the parent's
    try:
        found = os.statvfs(folder)
    except OSError as exc:
        return [result("disk", FAIL, _("cannot look at the outbox's folder {folder}: {reason}").format(
            folder=folder, reason=exc.strerror or exc),
            _("create it (deploy/install.sh makes /var/lib/linli) or correct buffer.path"))]
    free = found.f_bavail * found.f_frsize   # what an unprivileged agent may still use (edge.health does the same)
    if found.f_flag & os.ST_RDONLY:
        return [result("disk", FAIL, _("{folder} is on a read-only filesystem: the outbox cannot write").format(
            folder=folder), _("the kernel remounts a failing SD card read-only: look at dmesg, replace the card"))]
    if free < MIN_FREE_BYTES:
        return [result("disk", FAIL, _("only {free} MiB free at {folder}: the outbox cannot write").format(
            free=_mib(free), folder=folder), _("free space: sudo journalctl --vacuum-size=50M, remove old files"))]
    wanted = doctor.config.buffer.max_mb * MIB
    if free < wanted:
        return [result("disk", WARN, _("{free} MiB free at {folder}, less than the {limit:g} MiB the outbox may "
                                       "grow to").format(free=_mib(free), folder=folder,
                                                         limit=doctor.config.buffer.max_mb),
                       _("free space, or lower buffer.max_mb"))]
    return [result("disk", PASS, _("{free} MiB free at {folder}").format(free=_mib(free), folder=folder))]


def check_outbox(doctor: Doctor) -> list[Result]:
    path = Path(doctor.config.buffer.path)
    other = describe_foreign(path)
    if other is not None:
        return [result("outbox", FAIL, _("{path} is {what}, not an outbox: the agent refuses to use it").format(
            path=path, what=other), _("move that file away, or correct buffer.path"))]
    if not path.exists() and not doctor.agent_running:
        return [result("outbox", PASS, _("no outbox at {path} yet: the agent makes it when it starts").format(
            path=path))]
    try:
        problem = integrity_problem(path)
        depth, oldest = _figures(doctor, path)
    except (OutboxError, sqlite3.Error) as exc:
        return [result("outbox", WARN, _("cannot read the outbox {path}: {error}").format(path=path, error=exc),
                       _("run linli doctor as root, or as the user the agent runs as"))]
    if problem is not None:
        return [result("outbox", FAIL, _("{path} is damaged: {problem}").format(path=path, problem=problem),
                       _("restart the agent: it moves a damaged outbox aside and starts a new one "
                         "(sudo systemctl restart linli-edge)"))]
    stored = (doctor.health or {}).get("outbox") or {}
    if stored.get("unavailable") or stored.get("disk_full"):
        return [result("outbox", FAIL, _("the running agent cannot store records in {path}: {problem}").format(
            path=path, problem=stored.get("unavailable") or _("the disk is full")),
            _("look at the disk line above and the agent's log: journalctl -u linli-edge"))]
    if oldest is None:
        return [result("outbox", PASS, _("{path} is sound and empty").format(path=path))]
    age = datetime.datetime.now().timestamp() - oldest / 1000
    since = datetime.datetime.fromtimestamp(oldest / 1000).astimezone().strftime("%Y-%m-%d %H:%M")
    detail = _("{path}: {depth} records waiting, the oldest from {since}").format(path=path, depth=depth,
                                                                                 since=since)
    if age > OLD_RECORD_S:
        return [result("outbox", WARN, detail, _("records are not leaving: look at the broker line; linli status "
                                                 "shows the uplink's last error"))]
    return [result("outbox", PASS, detail)]


def _figures(doctor: Doctor, path: Path) -> tuple[int, int | None]:
    """Records waiting and the ``ts`` (epoch ms) of the oldest: the agent's count, else the file's."""
    if doctor.agent_running:
        stored = doctor.health.get("outbox") or {}
        return stored.get("depth") or 0, stored.get("oldest_ts")
    uri = "file:" + urllib.parse.quote(os.fspath(path.resolve())) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"outbox", "chunk"} <= tables:   # made but never committed to: nothing waits
            return 0, None
        depth = conn.execute("SELECT (SELECT count(*) FROM outbox) + "
                             "(SELECT coalesce(sum(count), 0) FROM chunk)").fetchone()[0]
        oldest = conn.execute("SELECT min(t) FROM (SELECT min(ts) AS t FROM outbox "
                              "UNION ALL SELECT min(ts_from) FROM chunk)").fetchone()[0]
    finally:
        conn.close()
    return depth, oldest
