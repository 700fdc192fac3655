"""One agent per outbox: an exclusive lock on ``<outbox>.lock``, held for as long as the outbox is open.

Two agents on one outbox (a technician's ``linli run`` while the service runs,
or two configs naming the same file) hand out the same seqs with different
readings and take the MQTT client id from each other. Before it opens an
outbox the agent takes ``flock(2)`` on a lock file beside it (the outbox's real
path, so a symlink or ``..`` in a path cannot make two names for one outbox)
and keeps the descriptor until it closes that outbox. The kernel drops the
lock when the process ends, however it ends — ``kill -9``, a power cut — so
there is never a stale lock to clean up, unlike a pid file whose pid may by
then belong to another process. The pid written into the file only lets the
refusal name the running agent.

When the lock file cannot be made at all (a read-only or full disk), the agent
runs without it and says so: SQLite cannot write an outbox in that directory
either, and refusing to start would also silence the local alarms, which work
without a disk.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import stat

from edge.errors import LinliError
from edge.exits import EX_CANTCREAT, EX_TEMPFAIL
from edge.i18n import _

log = logging.getLogger("linli.lock")


_PID_LINE = re.compile(rb"\d{1,10}\n?")
#: Bytes of a lock file read: a pid line is at most 11.
LOCK_READ = 64


class InstanceLockError(LinliError):
    """The outbox's lock cannot be used: a file that is not a lock is where the lock file goes."""

    exit_code = EX_CANTCREAT


class AgentAlreadyRunning(InstanceLockError):
    """Another agent holds the outbox's lock."""

    # The other agent may well stop (a test run by hand), and systemd's Restart=always tries again after
    # RestartSec, so the service takes over once the outbox is free.
    exit_code = EX_TEMPFAIL


def lock_path(outbox_path: str | os.PathLike) -> str:
    """Where the lock of the outbox at ``outbox_path`` lives."""
    return os.path.realpath(outbox_path) + ".lock"


class OutboxLock:
    """The lock of one outbox; :meth:`acquire` takes it or raises, :meth:`release` lets it go."""

    def __init__(self, outbox_path: str | os.PathLike):
        self.outbox_path = os.fspath(outbox_path)
        self.path = lock_path(outbox_path)
        self._fd: int | None = None

    def acquire(self) -> OutboxLock:
        """Take the lock; :class:`AgentAlreadyRunning` naming the holder's pid when another process has it."""
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            if isinstance(exc, IsADirectoryError) or exc.errno == errno.ELOOP:   # a directory, a symlink
                raise self._foreign() from None
            log.error("cannot make the lock file %s (%s): this agent is not guarded against a second one "
                      "on the same outbox", self.path, exc.strerror or exc)
            return self
        try:
            self._take(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _take(self, fd: int) -> None:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise self._foreign()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = _read(fd).strip().decode("ascii", "replace") or "?"
            raise AgentAlreadyRunning(_(
                "another agent (pid {pid}) already runs on the outbox {outbox}: stop it first "
                "(systemctl stop linli-edge), or give this config another [buffer] path").format(
                pid=held_by, outbox=self.outbox_path)) from None
        if not is_lock_content(_read(fd)):
            raise self._foreign()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            # The lock holds all the same; only the pid a second agent would name is missing (a full disk).
            log.warning("the lock %s is held, but its pid could not be written: %s", self.path, exc.strerror)

    def _foreign(self) -> InstanceLockError:
        return InstanceLockError(_("{path} is where the lock of the outbox {outbox} goes, but it holds something "
                                   "else; it is left alone: move it away or give [buffer] another path").format(
            path=self.path, outbox=self.outbox_path))

    def release(self) -> None:
        """Let the lock go (the file stays: removing it would race with an agent that just opened it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_lock_content(content: bytes) -> bool:
    """True for what a lock file holds (nothing, or a pid line), given its first :data:`LOCK_READ` bytes."""
    return not content or _PID_LINE.fullmatch(content) is not None


def _read(fd: int) -> bytes:
    return os.pread(fd, LOCK_READ, 0)
