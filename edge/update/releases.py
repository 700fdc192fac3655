"""The releases on a gateway: each in a folder of its own, ``current`` and ``previous`` links between them.

::

    /opt/linli/releases/0.2.0-3f2a9c0d11be/   a virtualenv holding that release, and linli-release.json
    /opt/linli/current  -> releases/0.2.0-3f2a9c0d11be     what systemd runs
    /opt/linli/previous -> releases/0.1.0-81c0aa7e52d4     the way back

deploy/install.sh makes the same layout (docs/decisions/0010-self-update.md). A release folder
without its ``linli-release.json`` is unfinished (pip was cut short) and is never switched to:
the marker is written last. A link is switched by renaming a new link over it, so ``current``
always names a whole release, whatever moment the power goes.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.errors import LinliError
from edge.exits import EX_SOFTWARE
from edge.i18n import _
from edge.managed_config import fsync_folder
from edge.update.package import Package

ROOT = Path("/opt/linli")
MARKER = "linli-release.json"
#: pip's output kept for an error message: the end says what went wrong.
_PIP_TAIL = 1500


class ReleaseError(LinliError):
    """A release could not be installed or switched to."""

    exit_code = EX_SOFTWARE


@dataclass(frozen=True)
class Release:
    id: str
    path: Path
    version: str
    sha256: str

    @property
    def command(self) -> Path:
        return self.path / "bin" / "linli"


class Releases:
    """The release tree under ``root`` (``/opt/linli`` on a gateway)."""

    def __init__(self, root: Path = ROOT):
        self.root = Path(root)
        self.folder = self.root / "releases"

    # --- reading ------------------------------------------------------------------------------------
    def current(self) -> Release | None:
        return self._through("current")

    def previous(self) -> Release | None:
        return self._through("previous")

    def _through(self, link: str) -> Release | None:
        try:
            target = os.readlink(self.root / link)
        except OSError:
            return None
        return self.get(Path(target).name)

    def get(self, release_id: str) -> Release | None:
        """The finished release ``release_id``, or None (absent, or its marker missing or unreadable)."""
        path = self.folder / release_id
        try:
            marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
            return Release(release_id, path, str(marker["version"]), str(marker["sha256"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # --- installing ----------------------------------------------------------------------------------
    def install(self, package: Package, wheels: Path) -> Release:
        """``package`` as a release of its own (reused when already there); its wheels are in ``wheels``."""
        done = self.get(package.release_id)
        if done is not None and done.sha256 == package.sha256:
            return done
        path = self.folder / package.release_id
        # A venv's scripts name their folder, so the release is built in place; unfinished until the marker.
        shutil.rmtree(path, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        own = package.wheels_into(wheels)
        _run([sys.executable, "-m", "venv", "--system-site-packages", str(path)],
             _("making the virtualenv {path}").format(path=path))
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--only-binary", ":all:"]
        if package.bundle:
            pip += ["--no-index", "--find-links", str(wheels)]
        _run([*pip, str(own)], _("installing {name} into {path}").format(name=own.name, path=path))
        marker = {"version": package.version, "sha256": package.sha256, "package": package.path.name,
                  "installed": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        temporary = path / f".{MARKER}.new"
        temporary.write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path / MARKER)
        fsync_folder(path)
        release = self.get(package.release_id)
        assert release is not None
        return release

    def discard(self, release: Release) -> None:
        """Remove ``release`` unless a link names it."""
        if release.id not in self._linked():
            shutil.rmtree(release.path, ignore_errors=True)

    # --- switching -----------------------------------------------------------------------------------
    def switch(self, to: Release) -> Release | None:
        """Make ``to`` current and what was current previous; the release that was current."""
        was = self.current()
        if was is not None and was.id != to.id:
            self._link("previous", was)
        self._link("current", to)
        return was

    def switch_back(self, to: Release, previous: Release | None) -> None:
        """Undo :meth:`switch`: ``to`` current again and ``previous`` the way back, as they were."""
        self._link("current", to)
        if previous is not None and previous.id != to.id:
            self._link("previous", previous)
        else:
            _unlink(self.root / "previous")

    def prune(self) -> list[str]:
        """Remove every release neither link names (the installer's leftovers, unfinished builds); their ids."""
        keep = self._linked()
        removed = []
        for path in sorted(self.folder.iterdir()) if self.folder.is_dir() else []:
            if path.name not in keep and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed

    def _linked(self) -> set[str]:
        names = set()
        for link in ("current", "previous"):
            try:
                names.add(Path(os.readlink(self.root / link)).name)
            except OSError:
                pass
        return names

    def _link(self, name: str, release: Release) -> None:
        temporary = self.root / f".{name}.new"
        _unlink(temporary)
        os.symlink(os.path.relpath(release.path, self.root), temporary)
        os.replace(temporary, self.root / name)
        fsync_folder(self.root)


def _run(argv: list[str], doing: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReleaseError(_("{doing} failed: {reason}").format(doing=doing, reason=exc)) from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-_PIP_TAIL:]
        raise ReleaseError(_("{doing} failed (exit status {status}):\n{output}").format(
            doing=doing, status=result.returncode, output=tail))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
