"""Every file a config names, checked against what the agent would make or use there — touching none of them.

The agent never deletes, renames or overwrites a file it did not make (issue 14): a
``[buffer] path`` that named ``/etc/passwd`` once had it moved aside and replaced. So
``linli config check`` — and ``linli run`` and every reload, which load the config the
same way — refuses a path where something else already stands:

* the outbox (``[buffer] path``): an existing file must be an outbox, told from its first
  100 bytes (:func:`buffer.fileinfo.foreign`); beside it, the lock ``<real path>.lock``
  must be a lock file (:mod:`edge.instance_lock`) and SQLite's ``-wal`` and ``-shm``
  regular files, not links: SQLite follows a link there and truncates what it points to;
* the control socket (``[control] socket``): an existing one must be a socket, and its
  path must fit in a Unix socket address;
* the files the agent only reads (TLS, the MQTT password): regular files, for opening a
  FIFO blocks until someone writes to it;
* no two of them one file, unless both are only read (a PEM may hold a certificate and
  its key), and none of them the config file itself.

A folder on the way must be a folder, and a path must fit the kernel's limits on names.
Only ``stat``, ``lstat`` and, for regular files, a read-only look at their first bytes:
nothing here writes, and nothing opens a FIFO or a device. A path that cannot be looked
at (permission) is not judged: the agent's own attempt fails on its own, touching nothing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from buffer.fileinfo import Foreign, foreign, kind_of_mode
from edge.i18n import _
from edge.instance_lock import LOCK_READ, is_lock_content, lock_path

#: ``sun_path`` of a Unix socket address holds 108 bytes, the last one the terminating NUL.
MAX_SOCKET_PATH = 107
#: Linux's PATH_MAX (4,096 with the terminating NUL) and NAME_MAX, in bytes.
MAX_PATH = 4095
MAX_NAME = 255


@dataclass
class PathClaims:
    """The files of one config by real path, with the key that named each: two keys on one file are a problem.

    Several keys may name one file that the agent only reads; a file it makes or writes is one key's alone.
    """

    #: real path -> (key path or None for the config file itself, what the file is for, whether the agent writes it)
    taken: dict[str, tuple[str | None, str, bool]] = field(default_factory=dict)

    def claim(self, path: str, key: str | None, what: str, *, writes: bool) -> str | None:
        """Record that ``key`` uses ``path`` for ``what``; a problem when another key's file is the same one."""
        real = os.path.realpath(path)
        if real not in self.taken:
            self.taken[real] = (key, what, writes)
            return None
        other_key, other_what, other_writes = self.taken[real]
        if not (writes or other_writes):
            return None
        if other_key is None:
            return _('"{path}" is {what}').format(path=path, what=other_what)
        return _('"{path}" is also {what} ({key})').format(path=path, what=other_what, key=other_key)


def outbox_problems(path: str, claims: PathClaims) -> list[str]:
    """What stands in the way of the outbox at ``path`` (absolute) and of what SQLite and the lock put beside it."""
    found = _length_problems(path, suffix=".lock") or _folder_problems(path)
    if found:
        return found
    lock, real = lock_path(path), os.path.realpath(path)
    beside = {lock: _("the outbox's lock"), real + "-wal": _("the outbox's write-ahead log"),
              real + "-shm": _("the outbox's shared-memory index")}
    for each, what in {path: _("the outbox"), **beside}.items():
        if problem := claims.claim(each, "buffer.path", what, writes=True):
            found.append(problem)
    if found:
        return found
    if (other := foreign(path)) is not None:
        found.append(_('"{path}" is {what}, not an outbox: the agent leaves it alone and cannot start on it; '
                       'correct the path or move that file away').format(path=path, what=describe(other)))
    for each, what in beside.items():
        if (problem := _companion_problem(each, what, lock=each == lock)) is not None:
            found.append(problem)
    return found


def socket_problems(path: str, claims: PathClaims) -> list[str]:
    """What stands in the way of the control socket at ``path`` (absolute)."""
    length = len(os.fsencode(path))
    if length > MAX_SOCKET_PATH:
        return [_("the path is {length} bytes; the path of a Unix socket may have at most {limit}").format(
            length=length, limit=MAX_SOCKET_PATH)]
    found = _folder_problems(path)
    if not found and (problem := claims.claim(path, "control.socket", _("the control socket"), writes=True)):
        found.append(problem)
    if found:
        return found
    mode = _lstat_mode(path)
    if mode is not None and not stat.S_ISSOCK(mode):
        found.append(_('"{path}" is {what}, not a socket: the agent would not replace it with its control '
                       'socket').format(path=path, what=_kind(kind_of_mode(mode) or "regular")))
    return found


def read_file_problem(path: str, key: str, what: str, claims: PathClaims) -> str | None:
    """Why the agent could not read ``path`` (absolute) as the regular file ``key`` names, or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return _('no such file "{path}"').format(path=path)
    except OSError as exc:
        return _('cannot read "{path}": {reason}').format(path=path, reason=exc.strerror or exc)
    if stat.S_ISDIR(mode):
        return _('expected a file, "{path}" is a directory').format(path=path)
    if not stat.S_ISREG(mode):   # a FIFO would block the uplink until someone writes to it
        return _('expected a regular file, "{path}" is {what}').format(path=path, what=_kind(kind_of_mode(mode)))
    if not os.access(path, os.R_OK):
        return _('cannot read "{path}": permission denied').format(path=path)
    return claims.claim(path, key, what, writes=False)


def describe(found: Foreign) -> str:
    """:meth:`Foreign.describe` in the user's language."""
    application_id = None if found.application_id is None else f"{found.application_id:#010x}"
    return _kind(found.kind).format(size=found.size, application_id=application_id, version=found.version)


def _kind(kind: str) -> str:
    return {
        "regular": _("a regular file"),
        "directory": _("a directory"),
        "fifo": _("a FIFO (named pipe)"),
        "socket": _("a socket"),
        "character-device": _("a character device"),
        "block-device": _("a block device"),
        "symlink": _("a symbolic link"),
        "special": _("a special file"),
        "text": _("a text file of {size} bytes"),
        "binary": _("a file of {size} bytes that is not an SQLite database"),
        "truncated-sqlite": _("a truncated SQLite file of {size} bytes"),
        "sqlite": _("an SQLite database of another program (application_id {application_id})"),
        "newer-outbox": _("an outbox of a newer version of linli-edge (schema version {version})"),
    }[kind]


def _companion_problem(path: str, what: str, *, lock: bool) -> str | None:
    """The lock, ``-wal`` or ``-shm`` at ``path``: absent, or a regular file (the lock: holding a pid) — not a link."""
    mode = _lstat_mode(path)
    kind = None if mode is None else kind_of_mode(mode)
    if kind is not None:
        return _('"{path}" is where {what} goes, but it is {kind}: move it away').format(
            path=path, what=what, kind=_kind(kind))
    if mode is not None and lock and not _holds_a_lock(path):
        return _('"{path}" is where {what} goes, but it holds something else: move it away').format(
            path=path, what=what)
    return None


def _holds_a_lock(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return True   # cannot look (permission): the lock judges it when the agent takes it
    try:
        return not stat.S_ISREG(os.fstat(fd).st_mode) or is_lock_content(os.pread(fd, LOCK_READ, 0))
    finally:
        os.close(fd)


def _lstat_mode(path: str) -> int | None:
    try:
        return os.lstat(path).st_mode
    except OSError:   # absent, or not to be looked at: nothing the agent would replace
        return None


def _folder_problems(path: str) -> list[str]:
    """The nearest existing folder on the way to ``path`` must be a folder (the agent makes the missing ones)."""
    folder = os.path.dirname(path)
    while True:
        try:
            mode = os.stat(folder).st_mode
        except (FileNotFoundError, NotADirectoryError):
            if os.path.lexists(folder):   # a link to nothing: no folder can be made there
                mode = stat.S_IFLNK
            else:
                folder = os.path.dirname(folder)
                continue
        except OSError:
            return []   # not to be looked at: the agent's own attempt says why
        if stat.S_ISDIR(mode):
            return []
        return [_('"{path}" cannot be created: "{folder}" is {what}, not a directory').format(
            path=path, folder=folder, what=_kind(kind_of_mode(mode) or "regular"))]


def _length_problems(path: str, suffix: str = "") -> list[str]:
    """``path`` within the kernel's PATH_MAX and NAME_MAX, with room for the ``suffix`` the agent adds to it."""
    encoded = os.fsencode(path)
    if len(encoded) > MAX_PATH - len(suffix):
        return [_("the path is {length} bytes; here it may have at most {limit}").format(
            length=len(encoded), limit=MAX_PATH - len(suffix))]
    names = encoded.split(b"/")
    for index, name in enumerate(names):
        limit = MAX_NAME - (len(suffix) if index == len(names) - 1 else 0)
        if len(name) > limit:
            return [_('"{name}" is {length} bytes; here a file name may have at most {limit}').format(
                name=os.fsdecode(name), length=len(name), limit=limit)]
    return []
