"""The updater: install a package beside the running release, switch, restart, judge, switch back.

Runs as root: ``linli update PACKAGE-FILE`` by a technician, or ``linli update --requested`` in
``linli-update.service`` when the agent was asked over MQTT (:mod:`edge.update.handoff`). One
update at a time (a lock beside the releases). Each step is written to ``state.json`` before it
is taken, so an update cut short by a power cut is finished at the next start of the updater:
one cut before the switch is abandoned, one during the trial is judged again and undone if the
new release is not healthy.

The new release's code never runs as root: its first start (``linli version`` and ``linli config
check``, before anything is switched) runs as the agent's user, and then systemd runs it as
always. A release that cannot even do that is refused without a switch.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge.update.handoff import Handoff, Request, now_iso
from edge.update.package import Package, PackageError
from edge.update.releases import Release, ReleaseError, Releases
from edge.update.service import AgentService

log = logging.getLogger("linli.update")

#: The account systemd runs the agent as (systemd/linli-edge.service User=).
AGENT_USER = "linli"
#: The outcomes: the first two are a success.
UPDATED, UNCHANGED, ROLLED_BACK, REFUSED = "updated", "unchanged", "rolled_back", "refused"


@dataclass
class Outcome:
    """How one update ended, as ``state.json``, the reply and ``linli status`` tell it."""

    id: str
    via: str
    outcome: str
    reason: str | None = None
    to: dict[str, str] | None = None
    was: dict[str, str] | None = None
    steps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in (UPDATED, UNCHANGED)


class Updater:
    """Updates under ``releases`` the agent run by ``service`` with the config at ``config_path``."""

    def __init__(self, releases: Releases, handoff: Handoff, service: AgentService, config_path: str,
                 say: Callable[[str], None] = lambda _line: None):
        self.releases = releases
        self.handoff = handoff
        self.service = service
        self.config_path = config_path
        self.say = say

    def requested(self) -> Outcome | None:
        """Finish an interrupted update, then carry out the agent's request if there is one."""
        with self._locked():
            resumed = self._resume()
            try:
                request = self.handoff.take()
            except ValueError as exc:
                log.error("%s", exc)
                return resumed
            return self._update(request) if request else resumed

    def refuse_requested(self, reason: str) -> Outcome | None:
        """Answer the agent's request with ``reason`` without trying it (the updater cannot even read its setup)."""
        with self._locked():
            try:
                request = self.handoff.take()
            except ValueError as exc:
                log.error("%s", exc)
                return None
            return self._done(Outcome(request.id, request.via, REFUSED), REFUSED, reason) if request else None

    def update(self, request: Request) -> Outcome:
        with self._locked():
            self._resume()
            return self._update(request)

    # --- one update ----------------------------------------------------------------------------------
    def _update(self, request: Request) -> Outcome:
        outcome = Outcome(request.id, request.via, REFUSED)
        was = self.releases.current()
        outcome.was = _described(was)
        self._state(outcome, "installing", started=now_iso(), deadline_s=request.deadline_s)
        try:
            package = Package.open(request.package, request.sha256)
            outcome.to = {"version": package.version, "release": package.release_id}
            if was is not None and was.id == package.release_id:
                return self._done(outcome, UNCHANGED, f"release {was.id} is the one running")
            before = self.service.readiness()
            need_broker = bool(before and (before.get("broker") or {}).get("connected"))
            self._step(outcome, f"installing {package.path.name} as release {package.release_id}")
            with tempfile.TemporaryDirectory(dir=self.releases.root, prefix=".wheels-") as wheels:
                release = self.releases.install(package, Path(wheels))
            self._step(outcome, f"starting {release.id} once as {AGENT_USER}")
            self._first_start(release)
        except (PackageError, ReleaseError) as exc:
            return self._done(outcome, REFUSED, str(exc))
        previous = self.releases.previous()
        self._state(outcome, "trial", previous=_described(previous))
        self.releases.switch(release)
        self._step(outcome, f"switched to {release.id}; restarting {self.service.unit}")
        problems = self.service.restart_and_judge(release.version, request.deadline_s, need_broker)
        if not problems:
            self.releases.prune()
            return self._done(outcome, UPDATED, None)
        return self._switch_back(outcome, release, was, previous, problems, request.deadline_s, need_broker)

    def _switch_back(self, outcome: Outcome, release: Release, was: Release | None, previous: Release | None,
                     problems: list[str], deadline: float, need_broker: bool) -> Outcome:
        why = f"{release.version} was not healthy within {deadline:g} s: " + "; ".join(problems)
        if was is None:
            return self._done(outcome, ROLLED_BACK, why + "; there is no earlier release to go back to")
        self._step(outcome, f"not healthy ({'; '.join(problems)}); switching back to {was.id}")
        self.releases.switch_back(was, previous)
        self.releases.discard(release)
        again = self.service.restart_and_judge(was.version, deadline, need_broker)
        if again:
            why += f"; back on {was.version}, which is not healthy either: " + "; ".join(again)
        else:
            why = f"switched back to {was.version}: " + why
        return self._done(outcome, ROLLED_BACK, why)

    def _resume(self) -> Outcome | None:
        """An update a power cut or a kill interrupted: abandoned before the switch, judged again after it."""
        state = self.handoff.state()
        if not state or state.get("phase") not in ("installing", "trial"):
            return None
        outcome = Outcome(str(state.get("id")), str(state.get("via")), REFUSED, to=state.get("to"),
                          was=state.get("from"), steps=list(state.get("steps") or []))
        if state["phase"] == "installing":
            return self._done(outcome, REFUSED, "interrupted before the switch (power cut or updater killed); "
                                                "nothing changed")
        current = self.releases.current()
        was = self.releases.get((outcome.was or {}).get("release", ""))
        if current is None or current.id != (outcome.to or {}).get("release"):
            return self._done(outcome, ROLLED_BACK, "interrupted during the trial; the new release is not current")
        deadline = float(state.get("deadline_s") or 60)
        self._step(outcome, f"resuming the trial of {current.id} after an interruption")
        problems = self.service.restart_and_judge(current.version, deadline, False)
        if not problems:
            self.releases.prune()
            return self._done(outcome, UPDATED, None)
        previous = self.releases.get((state.get("previous") or {}).get("release", ""))
        return self._switch_back(outcome, current, was, previous, problems, deadline, False)

    def _first_start(self, release: Release) -> None:
        """``linli version`` and ``linli config check`` from ``release``, as the agent's user; ReleaseError if not."""
        user = _agent_user()
        for argv in ([str(release.command), "version"],
                     [str(release.command), "config", "check", "--config", self.config_path]):
            command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv] \
                if user and shutil.which("setpriv") else argv
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                                        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ReleaseError(f"{release.version} does not start: {exc}") from None
            if result.returncode != 0:
                lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
                raise ReleaseError(f"{release.version} does not start ({' '.join(argv[1:])} exited "
                                   f"{result.returncode}): {lines[-1]}")

    # --- bookkeeping ---------------------------------------------------------------------------------
    def _step(self, outcome: Outcome, text: str) -> None:
        log.info("update %s: %s", outcome.id, text)
        self.say(text)
        outcome.steps.append(text)
        self._state(outcome, (self.handoff.state() or {}).get("phase", "installing"))

    def _state(self, update: Outcome, phase: str, **extra: Any) -> None:
        state = self.handoff.state() or {}
        if state.get("id") != update.id:
            state = {}
        state.update({"id": update.id, "via": update.via, "phase": phase, "from": update.was,
                      "to": update.to, "steps": update.steps}, **extra)
        self.handoff.set_state(state, _agent_owner())

    def _done(self, outcome: Outcome, result: str, reason: str | None) -> Outcome:
        outcome.outcome, outcome.reason = result, reason
        (log.info if outcome.ok else log.error)("update %s: %s%s", outcome.id, result, f": {reason}" if reason else "")
        self._state(outcome, "done", outcome=result, reason=reason, finished=now_iso())
        return outcome

    def _locked(self):
        return _Lock(self.releases.root / ".update.lock")


class _Lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc):
        os.close(self.fd)


def _described(release: Release | None) -> dict[str, str] | None:
    return None if release is None else {"version": release.version, "release": release.id}


def _agent_owner() -> tuple[int, int] | None:
    user = _agent_user()
    if user is None:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _agent_user() -> str | None:
    """The agent's account when it exists and this process is root (a test or a desk has neither)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(AGENT_USER)
    except KeyError:
        return None
    return AGENT_USER
