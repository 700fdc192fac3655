"""``cmd/update`` on the agent's side: fetch and check the package, hand it to the updater, answer once.

The agent cannot install or restart itself (decision 0010); it fetches the package (``url``)
or takes it from the gateway's disk (``path``) into ``<state>/update/incoming/``, checks its
sha256 and that it is a linli-edge release, and leaves a request for the updater
(:mod:`edge.update.handoff`). An updater that does not take it within :data:`CLAIM_TIMEOUT`
is reported (``linli-update.path`` not enabled).

Who answers: an update refused before the switch is answered by the agent that was asked, when
the updater says so. One that switched restarts the agent; the agent that runs afterwards (the new
release, or the old one after a switch back) finds the outcome in ``state.json`` and answers
the request then (:class:`UpdateReports`), publishing its ``event`` record too, exactly once
(``reported``). ``linli status`` shows the last outcome.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from edge.commands import CommandError, RolledBack, Slow
from edge.events import Audit
from edge.update.handoff import Handoff, Request, now_iso
from edge.update.package import MAX_BYTES, Package, PackageError, check_sha256

log = logging.getLogger("linli.update")

#: How long the updater may take to pick a request up (linli-update.path starts it within a second).
CLAIM_TIMEOUT = 30.0
#: How long the asking agent waits for an outcome decided without restarting it (pip on a slow card).
OUTCOME_TIMEOUT = 1800.0
DEFAULT_DEADLINE, MIN_DEADLINE, MAX_DEADLINE = 60.0, 10.0, 600.0
DOWNLOAD_TIMEOUT = 60.0
#: How often the agent looks for an outcome to report.
POLL = 1.0
_OUTCOME_OF = {"updated": "applied", "unchanged": "applied", "rolled_back": "rolled_back", "refused": "refused"}


class UpdateRequests:
    """The ``update`` command, for an agent whose update folder is ``handoff``."""

    def __init__(self, handoff: Handoff, version: str):
        self.handoff = handoff
        self.version = version
        self.asking: set[str] = set()   # ids this process waits on: their answers are its own
        self._one = threading.Lock()

    def handlers(self) -> dict[str, Slow]:
        return {"update": Slow(self.update)}

    def update(self, args: dict[str, Any], request_id: str) -> dict[str, Any]:
        source, sha256, deadline = _arguments(args)
        state = self.handoff.state() or {}
        if state.get("id") == request_id and state.get("phase") == "done":   # a repeat after a restart
            return _settled(state)
        if not self._one.acquire(blocking=False):
            raise CommandError("another update is under way; try again when it has been answered")
        try:
            if state.get("phase") in ("installing", "trial") or self.handoff.request_path.exists():
                raise CommandError(f"update {state.get('id')} is under way; try again when it has been answered")
            package = self._fetch(source, sha256)
            self.asking.add(request_id)
            return self._hand_over(Request(request_id, str(package.path), package.sha256, deadline, "mqtt",
                                           now_iso()))
        finally:
            self._one.release()

    def _fetch(self, source: tuple[str, str], sha256: str) -> Package:
        kind, where = source
        name = os.path.basename(where.split("?", 1)[0]) if kind == "url" else os.path.basename(where)
        incoming = self.handoff.incoming
        incoming.mkdir(parents=True, exist_ok=True)
        for old in incoming.iterdir():   # one package at a time: an SD card is not an archive
            old.unlink(missing_ok=True)
        target = incoming / name
        try:
            if kind == "url":
                _download(where, target)
            else:
                shutil.copyfile(where, target)
        except urllib.error.HTTPError as exc:
            target.unlink(missing_ok=True)
            raise CommandError(f"cannot fetch the package from {where}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, urllib.error.URLError, ValueError) as exc:
            target.unlink(missing_ok=True)
            raise CommandError(f"cannot fetch the package from {where}: {getattr(exc, 'reason', exc)}") from None
        try:
            return Package.open(target, sha256)
        except PackageError as exc:
            target.unlink(missing_ok=True)
            raise CommandError(str(exc)) from None

    def _hand_over(self, request: Request) -> dict[str, Any]:
        self.handoff.ask(request)
        log.info("update %s: %s handed to the updater", request.id, request.package)
        end = time.monotonic() + CLAIM_TIMEOUT
        while self.handoff.request_path.exists():
            if time.monotonic() >= end and self.handoff.withdraw():
                raise CommandError(f"the updater did not start within {CLAIM_TIMEOUT:g} s; nothing changed "
                                   "(is it enabled? systemctl enable --now linli-update.path)")
            time.sleep(0.2)
        end = time.monotonic() + OUTCOME_TIMEOUT
        while time.monotonic() < end:   # an outcome without a restart; after one, the next agent answers
            state = self.handoff.state() or {}
            if state.get("id") == request.id and state.get("phase") == "done":
                self.handoff.mark_reported(request.id)
                return _settled(state)
            time.sleep(POLL)
        raise CommandError(f"no outcome from the updater after {OUTCOME_TIMEOUT:g} s; see linli status")

    def last(self) -> dict[str, Any] | None:
        """The last update's outcome for ``linli status``: id, outcome, from, to, reason, finished."""
        state = self.handoff.state()
        if not state:
            return None
        keys = ("id", "via", "phase", "outcome", "reason", "from", "to", "finished")
        return {key: state.get(key) for key in keys}


class UpdateReports(threading.Thread):
    """Answers and announces, once, an update whose outcome came after a restart of the agent."""

    def __init__(self, requests: UpdateRequests, send: Callable[[str, dict[str, Any]], None],
                 audit: Callable[[str], Audit], gateway: str):
        super().__init__(name="update reports", daemon=True)
        self.requests = requests
        self.send = send
        self.audit = audit
        self.gateway = gateway
        self._stop = threading.Event()
        self._seen: tuple[int, int, int] | None = None   # the state file last read: read again only once replaced

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.report_once()
            except OSError as exc:   # the state folder unreadable for a moment: the next turn tries again
                log.warning("cannot look for an update's outcome: %s", exc)
            self._stop.wait(POLL)

    def report_once(self) -> bool:
        handoff = self.requests.handoff
        try:
            found = handoff.state_path.stat()
        except FileNotFoundError:
            return False
        stamp = (found.st_ino, found.st_mtime_ns, found.st_size)   # the updater replaces it whole
        if stamp == self._seen:
            return False
        self._seen = stamp
        state = handoff.state() or {}
        request_id = state.get("id")
        if state.get("phase") != "done" or not request_id or request_id in self.requests.asking \
                or handoff.reported() == request_id:
            return False
        try:
            result = {"ok": True, "result": _settled(state)}
        except CommandError as exc:
            result = {"ok": False, "error": str(exc)}
        reply = {"v": 1, "gateway": self.gateway, "id": request_id, "name": "update", **result}
        via = str(state.get("via") or "local")
        if via == "mqtt":
            self.send("update", reply)
        self.audit(via)("update", request_id, _OUTCOME_OF.get(str(state.get("outcome")), "failed"), reply)
        handoff.mark_reported(request_id)
        return True

    def stop(self) -> None:
        self._stop.set()


def _settled(state: dict[str, Any]) -> dict[str, Any]:
    """The reply's result for a finished update, or the CommandError that answers it."""
    outcome, reason = state.get("outcome"), state.get("reason")
    if outcome == "rolled_back":
        raise RolledBack(f"rolled back: {reason}")
    if outcome not in ("updated", "unchanged"):
        raise CommandError(f"not updated: {reason}")
    return {"outcome": outcome, "from": state.get("from"), "to": state.get("to"), "finished": state.get("finished")}


def _arguments(args: dict[str, Any]) -> tuple[tuple[str, str], str, float]:
    url, path = args.get("url"), args.get("path")
    if (url is None) == (path is None):
        raise CommandError("give the package as exactly one of args.url or args.path")
    source = ("url", url) if url is not None else ("path", path)
    if not isinstance(source[1], str) or not source[1]:
        raise CommandError(f"args.{source[0]} must be a non-empty string")
    if source[0] == "url" and not source[1].startswith(("https://", "http://")):
        raise CommandError("args.url must be an http:// or https:// address")
    try:
        sha256 = check_sha256(args.get("sha256"))
    except PackageError as exc:
        raise CommandError(f"args.sha256: {exc}") from None
    deadline = args.get("deadline_s", DEFAULT_DEADLINE)
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) \
            or not MIN_DEADLINE <= deadline <= MAX_DEADLINE:
        raise CommandError(f"args.deadline_s must be a number of seconds from {MIN_DEADLINE:g} to {MAX_DEADLINE:g}")
    return source, sha256, float(deadline)


def _download(url: str, target: Path) -> None:
    """``url`` into ``target``, refusing more than a release can weigh."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, open(target, "wb") as out:
        size = 0
        while chunk := response.read(1 << 16):
            size += len(chunk)
            if size > MAX_BYTES:
                raise ValueError(f"the package is larger than {MAX_BYTES >> 20} MiB")
            out.write(chunk)

