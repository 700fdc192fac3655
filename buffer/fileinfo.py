"""What stands at a path where an outbox should be, told without opening it as a database.

The outbox may only ever rename, rewrite or replace a file it made (issue 14: a typo in
``[buffer] path`` once had ``/etc/passwd`` moved aside and replaced by an SQLite file).
Whether a file is an outbox is told from its type and its first 100 bytes — the SQLite
header, whose ``application_id`` (4 bytes, big-endian, at offset 68) is
:data:`buffer.store.APPLICATION_ID` in every outbox — never by handing it to SQLite,
which would write to it.

Two things that look odd are outboxes all the same:

* an empty (0-byte) file: what a power cut while the outbox was being created leaves;
* an SQLite header whose ``application_id`` and schema cookie (offset 40) are both 0:
  the database has never committed a schema to its main file. That is an empty
  database, or an outbox whose first commit is still in its write-ahead log (the
  header page is only copied into the main file at the first checkpoint, so a
  running or killed agent's fresh outbox looks like this). The application id is set
  in the same transaction as the schema, so no outbox ever has a schema without it.
  Another program's database in the same state cannot be told apart by its header;
  the outbox refuses it when it opens it and finds tables that are not its own.

An outbox of a newer schema version than this one knows (``user_version`` at offset
60) is described too: this version would refuse it.

>>> import tempfile, os
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = os.path.join(tmp, "outbox.db")
...     before = describe_foreign(path)
...     _ = open(path, "w").write("[gateway]\\n")
...     print(before, "/", describe_foreign(path), "/", describe_foreign(tmp))
None / a text file of 10 bytes / a directory
"""

from __future__ import annotations

import codecs
import os
import stat
from dataclasses import dataclass

from buffer.store import APPLICATION_ID, SCHEMA_VERSION

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: The database header: everything looked at is in it.
HEADER_BYTES = 100
_SCHEMA_COOKIE_AT = 40
_USER_VERSION_AT = 60
_APPLICATION_ID_AT = 68

#: What :attr:`Foreign.kind` may be, each with its English description.
_DESCRIPTIONS = {
    "directory": "a directory",
    "fifo": "a FIFO (named pipe)",
    "socket": "a socket",
    "character-device": "a character device",
    "block-device": "a block device",
    "symlink": "a symbolic link",
    "special": "a special file",
    "text": "a text file of {size} bytes",
    "binary": "a file of {size} bytes that is not an SQLite database",
    "truncated-sqlite": "a truncated SQLite file of {size} bytes",
    "sqlite": "an SQLite database of another program (application_id {application_id:#010x})",
    "newer-outbox": "an outbox of a newer version of linli-edge (schema version {version})",
}


@dataclass(frozen=True)
class Foreign:
    """What stands at a path instead of an outbox this version can use: ``kind`` (see the descriptions) and facts."""

    kind: str
    size: int | None = None
    application_id: int | None = None
    version: int | None = None

    def describe(self) -> str:
        """A short English description, e.g. ``a text file of 1523 bytes``."""
        return _DESCRIPTIONS[self.kind].format(size=self.size, application_id=self.application_id,
                                               version=self.version)


def kind_of_mode(mode: int) -> str | None:
    """The :attr:`Foreign.kind` of a file that is not a regular file, from its ``st_mode``; None for a regular one.

    A mode from ``lstat`` may be a symbolic link; one from ``stat`` never is.
    """
    for test, kind in ((stat.S_ISREG, None), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character-device"),
                       (stat.S_ISBLK, "block-device"), (stat.S_ISLNK, "symlink")):
        if test(mode):
            return kind
    return "special"


def foreign(path: str | os.PathLike) -> Foreign | None:
    """What is at ``path`` if it is not an outbox (see the module docstring); None when it is one or nothing is there.

    Symbolic links are followed, as SQLite follows them. None too when the path cannot be
    looked at (a folder on the way that this user may not search, a file it may not read, a
    name too long): opening it as an outbox fails the same way, touching nothing. Only regular files are
    opened, read-only and non-blocking, and only their first 100 bytes are read.
    """
    try:
        found = os.stat(path)
    except OSError:   # absent, under a file, not searchable, a name too long, a loop of links
        return None
    kind = kind_of_mode(found.st_mode)
    if kind is not None:
        return Foreign(kind)   # never opened: opening a FIFO or a device can block or change it
    if found.st_size == 0:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        opened = os.fstat(fd)   # what was opened: the path may have been swapped since the stat
        kind = kind_of_mode(opened.st_mode)
        if kind is not None:
            return Foreign(kind)
        header = os.pread(fd, HEADER_BYTES, 0)
    finally:
        os.close(fd)
    return _judge_header(header, opened.st_size)


def describe_foreign(path: str | os.PathLike) -> str | None:
    """``foreign(path)`` in English words, e.g. ``a directory``; None when ``path`` is absent, empty or an outbox."""
    found = foreign(path)
    return None if found is None else found.describe()


def _judge_header(header: bytes, size: int) -> Foreign | None:
    if not header:   # emptied since it was looked at: as good as the empty file an outbox may be
        return None
    if not header.startswith(SQLITE_MAGIC):
        return Foreign("text" if _looks_like_text(header) else "binary", size)
    if len(header) < HEADER_BYTES:
        return Foreign("truncated-sqlite", size)
    application_id, schema_cookie, version = (int.from_bytes(header[at:at + 4], "big") for at in (
        _APPLICATION_ID_AT, _SCHEMA_COOKIE_AT, _USER_VERSION_AT))
    if application_id == APPLICATION_ID:
        return None if version <= SCHEMA_VERSION else Foreign("newer-outbox", size, version=version)
    if application_id == 0 and schema_cookie == 0:
        return None
    return Foreign("sqlite", size, application_id)


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a multi-byte character cut at the end of ``head`` still counts as text)."""
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True
