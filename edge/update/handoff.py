"""The files through which the agent and the updater hand an update to each other, in ``<state>/update/``.

The agent runs as ``linli`` in a sandbox where ``/opt`` is read-only and systemd cannot be
asked for anything, so it cannot install or restart itself; the updater runs as root in
``linli-update.service`` (docs/decisions/0010-self-update.md). Between them:

- ``request.json``: written by the agent for ``cmd/update``; its appearance starts the updater
  (``linli-update.path``), which takes it (reads and removes it) first thing;
- ``state.json``: written by the updater only, at each step: ``installing``, ``trial`` (the new
  release is current and being judged), ``done`` with the ``outcome``. After a power cut the
  updater finds ``installing`` or ``trial`` there and finishes the job;
- ``reported``: the id of the last outcome the agent has answered and announced, so a restarted
  agent answers each request once;
- ``incoming/``: packages the agent fetched or copied for the updater.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.managed_config import fsync_folder, write_atomically

#: Where a gateway's agent keeps it: systemd's StateDirectory=, also given to linli-update.service.
DEFAULT_STATE = "/var/lib/linli"


def update_folder(buffer_path: str | None) -> Path:
    """``<state>/update``: the state directory under systemd, else the outbox's folder (the default's without one)."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if not state:
        state = os.path.dirname(os.path.abspath(buffer_path)) if buffer_path else DEFAULT_STATE
    return Path(state) / "update"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Request:
    """One update asked for: by whom (``via``), which package file and hash, how long the new release has."""

    id: str
    package: str
    sha256: str
    deadline_s: float
    via: str
    requested: str


class Handoff:
    """The ``update`` folder seen by either side."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.request_path = self.folder / "request.json"
        self.state_path = self.folder / "state.json"
        self.reported_path = self.folder / "reported"
        self.incoming = self.folder / "incoming"

    # --- the agent's side ---------------------------------------------------------------------------
    def ask(self, request: Request) -> None:
        self.folder.mkdir(mode=0o750, exist_ok=True)
        write_atomically(self.request_path, _dump(asdict(request)), mode=0o640)

    def withdraw(self) -> bool:
        """Take the request back if the updater has not taken it; whether it was still there."""
        try:
            self.request_path.unlink()
        except FileNotFoundError:
            return False
        return True

    def reported(self) -> str | None:
        try:
            return self.reported_path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def mark_reported(self, request_id: str) -> None:
        write_atomically(self.reported_path, request_id.encode() + b"\n", mode=0o640)

    # --- the updater's side -------------------------------------------------------------------------
    def take(self) -> Request | None:
        """The request, removed from the folder so that it starts the updater only once; None when none is there.

        A request that cannot be read is removed all the same (it would start the updater forever)
        and reported by :class:`ValueError`.
        """
        try:
            data = self.request_path.read_bytes()
        except FileNotFoundError:
            return None
        self.request_path.unlink(missing_ok=True)
        fsync_folder(self.folder)
        try:
            fields = json.loads(data)
            return Request(id=str(fields["id"]), package=str(fields["package"]), sha256=str(fields["sha256"]),
                           deadline_s=float(fields["deadline_s"]), via=str(fields["via"]),
                           requested=str(fields["requested"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.request_path} cannot be read: {exc}") from None

    def state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def set_state(self, state: dict[str, Any], owner: tuple[int, int] | None = None) -> None:
        """Written by root, readable by the agent; a missing folder is made and given to ``owner`` (uid, gid)."""
        if not self.folder.is_dir():
            self.folder.mkdir(mode=0o750, parents=True)
            if owner is not None:   # before the agent ever ran, the updater makes its state folder
                for folder in (self.folder, self.folder.parent):
                    os.chown(folder, *owner)
        write_atomically(self.state_path, _dump(state), mode=0o644)


def _dump(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=1, ensure_ascii=False) + "\n").encode()
