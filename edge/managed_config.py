"""The configuration a remote ``config_set`` (or ``linli config apply``) wrote, kept in the state directory.

``ProtectSystem=strict`` makes ``/etc`` read-only for the agent, so the file it writes lives in
its state directory (decision 0009)::

    <state>/config/edge.toml         the managed copy: what the agent runs when it is valid and current
    <state>/config/edge.toml.1 … .3  the copies it replaced, newest first, for rollback
    <state>/config/installed.sha256  the sha256 of the installed file (``--config``) when the copy was written

``<state>`` is systemd's ``$STATE_DIRECTORY`` (``/var/lib/linli``), or, outside systemd, the
folder of the installed config's outbox. The managed copy wins over the installed file only
while the installed file is the one it was written over: a technician who edits
``/etc/linli/edge.toml`` on site and reloads gets what they wrote, not a remote copy they never saw.

A copy is checked as if it stood in the installed file's place (:func:`edge.config.load_config_text`),
so relative paths in it mean what they would mean there. Every write is a temporary file,
``fsync``, ``rename``, then an ``fsync`` of the folder: a power cut leaves the old copy or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

from edge.config import Config, load_config_text
from edge.errors import ConfigError

log = logging.getLogger("linli.managed_config")

#: Replaced copies kept for rollback and for a look at what changed.
GENERATIONS = 3
NAME = "edge.toml"
MARKER = "installed.sha256"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state_folder(installed: Config) -> Path:
    """Where the managed copy lives for an agent started from ``installed``."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state or os.path.dirname(os.path.abspath(installed.buffer.path))) / "config"


class ManagedConfig:
    """The installed file and the managed copy beside the state: which one runs, writing and restoring copies."""

    def __init__(self, installed_path: str, folder: Path):
        self.installed_path = installed_path
        self.folder = folder
        self.path = folder / NAME

    def current(self) -> tuple[bytes, Config]:
        """The text and config to run: the managed copy if it is there, valid and current, else the installed file.

        Raises :class:`ConfigError` only when the installed file itself is not usable.
        """
        installed = _read(Path(self.installed_path))
        copy = self._current_copy(installed)
        if copy is not None:
            try:
                return copy, load_config_text(copy, self.installed_path)
            except ConfigError as exc:   # a file named since may have gone: the installed file is the way back
                log.error("the managed configuration %s is no longer valid; running the installed one:\n%s",
                          self.path, exc)
        return installed, load_config_text(installed, self.installed_path)

    def _current_copy(self, installed: bytes) -> bytes | None:
        try:
            copy = self.path.read_bytes()
            marker = (self.folder / MARKER).read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("cannot read the managed configuration %s (%s); running the installed one", self.path, exc)
            return None
        if marker != sha256(installed):
            log.warning("%s changed since the configuration in %s was applied remotely; the installed file wins",
                        self.installed_path, self.path)
            return None
        return copy

    def write(self, text: bytes) -> bool:
        """Make ``text`` the managed copy, the one it replaces kept as generation 1; ``True`` if there was one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        had_copy = self.path.exists()
        if had_copy:
            for n in range(GENERATIONS - 1, 0, -1):
                older = self._generation(n)
                if older.exists():
                    os.replace(older, self._generation(n + 1))
            # A copy, not a rename: until the new file is renamed into place the old one still runs.
            write_atomically(self._generation(1), self.path.read_bytes())
        write_atomically(self.folder / MARKER, sha256(_read(Path(self.installed_path))).encode() + b"\n")
        write_atomically(self.path, text)
        return had_copy

    def restore(self, had_copy: bool) -> None:
        """Undo :meth:`write`: generation 1 is the managed copy again, or, if there was none, the installed file runs.

        The refused copy stays as ``edge.toml.rejected`` for a look at what failed.
        """
        if self.path.exists():
            os.replace(self.path, self.folder / f"{NAME}.rejected")
        if had_copy:
            os.replace(self._generation(1), self.path)
            for n in range(2, GENERATIONS + 1):
                if self._generation(n).exists():
                    os.replace(self._generation(n), self._generation(n - 1))
        fsync_folder(self.folder)

    def _generation(self, n: int) -> Path:
        return self.folder / f"{NAME}.{n}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError([f'cannot read "{path}": {exc.strerror or exc}'], str(path)) from None


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """``data`` as ``path``, or ``path`` unchanged after a power cut; ``mode`` (less the umask) from the first byte."""
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)   # a leftover would keep its own mode
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
