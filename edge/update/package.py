"""A release package: what ``linli update`` and ``cmd/update`` accept, checked before anything is installed.

Two forms (docs/decisions/0010-self-update.md):

- a **wheel**, ``linli_edge-<version>-py3-none-any.whl`` (``pip wheel --no-deps -w dist .``): its
  dependencies come from the package index the gateway's pip is set up for;
- a **bundle**, a tar file (``.tar``, ``.tar.gz`` or ``.tgz``) of wheels, the agent's and every one it
  needs (``pip wheel -w wheelhouse .`` then ``tar -czf linli-edge.tar.gz -C wheelhouse .``): it installs
  without any network, as a gateway in a locked pump room usually has none worth the name.

Nothing here executes what the package holds: a wheel is a zip file read as data, a bundle's
members are copied out by name only (no path from the archive is ever followed).

>>> Package.version_of("linli_edge-0.2.0-py3-none-any.whl")
'0.2.0'
>>> Package.version_of("pymodbus-3.8.0-py3-none-any.whl") is None
True
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge.errors import LinliError
from edge.exits import EX_DATAERR
from edge.i18n import _

#: The agent's own wheel in a bundle or on its own (PEP 427 file name; our distribution is linli-edge).
_OWN_WHEEL = re.compile(r"linli_edge-(?P<version>[0-9][0-9A-Za-z.+!_]*)-py3-none-any\.whl")
#: A file name pip accepts as a wheel.
_ANY_WHEEL = re.compile(r"[A-Za-z0-9_.]+-[0-9][^-/]*(-[0-9][^-/]*)?-[^-/]+-[^-/]+-[^-/]+\.whl")
#: Larger than any real release with its dependencies (about 6 MB), small beside an SD card.
MAX_BYTES = 256 * 2**20
BUNDLE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_CHUNK = 1 << 16


class PackageError(LinliError):
    """A package that cannot be installed: unreadable, a wrong hash, not a release of linli-edge."""

    exit_code = EX_DATAERR


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(text: object) -> str:
    """``text`` as a sha256 in lower-case hex, or :class:`PackageError`.

    >>> check_sha256("AB" * 32) == "ab" * 32
    True
    """
    if not isinstance(text, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise PackageError(_("the sha256 must be 64 hexadecimal digits"))
    return text.lower()


@dataclass(frozen=True)
class Package:
    """A checked package file: where it is, its hash, the agent version in it and whether it is a bundle."""

    path: Path
    sha256: str
    version: str
    bundle: bool

    @property
    def release_id(self) -> str:
        """The folder name of its release: ``<version>-<first 12 hex digits of the hash>``."""
        return f"{self.version}-{self.sha256[:12]}"

    @staticmethod
    def version_of(name: str) -> str | None:
        match = _OWN_WHEEL.fullmatch(name)
        return match["version"] if match else None

    @classmethod
    def open(cls, path: str | os.PathLike, sha256: str | None = None) -> Package:
        """Check ``path`` (and its hash, when given): the :class:`Package`, or :class:`PackageError` saying why."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise PackageError(_("cannot read the package {path}: {reason}").format(
                path=path, reason=exc.strerror or exc)) from None
        if size > MAX_BYTES:
            raise PackageError(_("{path} is {size} MiB; a release is at most {limit} MiB").format(
                path=path, size=size >> 20, limit=MAX_BYTES >> 20))
        try:
            digest = sha256_of(path)
        except OSError as exc:
            raise PackageError(_("cannot read the package {path}: {reason}").format(
                path=path, reason=exc.strerror or exc)) from None
        if sha256 is not None and digest != check_sha256(sha256):
            raise PackageError(_("{path} has sha256 {actual}, not the {expected} asked for: "
                                 "a damaged or a different file").format(path=path, actual=digest,
                                                                          expected=sha256.lower()))
        if path.name.endswith(BUNDLE_SUFFIXES):
            return cls(path, digest, _bundle_version(path), True)
        if path.name.endswith(".whl"):
            version = cls.version_of(path.name)
            if version is None:
                raise PackageError(_("{name} is not a linli-edge wheel (linli_edge-VERSION-py3-none-any.whl)")
                                   .format(name=path.name))
            _check_zip(path)
            return cls(path, digest, version, False)
        raise PackageError(_("{name} is neither a wheel (.whl) nor a bundle of wheels (.tar, .tar.gz, .tgz)")
                           .format(name=path.name))

    def wheels_into(self, folder: Path) -> Path:
        """Put the package's wheels into ``folder``; the agent's own wheel's path there.

        A bundle's wheels are copied out by their base names, so nothing lands outside ``folder``.
        """
        folder.mkdir(parents=True, exist_ok=True)
        if not self.bundle:
            target = folder / self.path.name
            shutil.copyfile(self.path, target)
            return target
        own = None
        try:
            with tarfile.open(self.path) as archive:
                for member in archive:
                    name = os.path.basename(member.name)
                    if not member.isfile() or not _ANY_WHEEL.fullmatch(name):
                        continue
                    with archive.extractfile(member) as source, open(folder / name, "wb") as out:
                        shutil.copyfileobj(source, out, _CHUNK)
                    if self.version_of(name):
                        own = folder / name
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise PackageError(_("cannot unpack {path}: {reason}").format(path=self.path, reason=exc)) from None
        assert own is not None, "Package.open checked that the bundle holds the agent's wheel"
        return own


def _bundle_version(path: Path) -> str:
    """The version of the one linli-edge wheel in the bundle ``path``, or :class:`PackageError`."""
    try:
        with tarfile.open(path) as archive:
            names = [os.path.basename(m.name) for m in archive if m.isfile()]
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise PackageError(_("{path} is not a readable tar file: {reason}").format(path=path, reason=exc)) from None
    versions = [v for v in map(Package.version_of, names) if v]
    if len(versions) != 1:
        raise PackageError(_("{path} holds {count} linli-edge wheels; a bundle holds exactly one, with the wheels "
                             "it needs").format(path=path, count=len(versions)))
    return versions[0]


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as wheel:
            broken = wheel.testzip()
    except (OSError, zipfile.BadZipFile) as exc:
        raise PackageError(_("{path} is not a readable wheel: {reason}").format(path=path, reason=exc)) from None
    if broken is not None:
        raise PackageError(_("{path} is damaged: {member} does not match its checksum").format(
            path=path, member=broken))
