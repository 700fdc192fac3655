"""The agent's unit as the updater sees it: restarted through systemd, judged over its control socket.

The health gate is the one ``config_set`` applies (:func:`edge.config_remote.unhealthy`),
asked of the restarted agent with the ``readiness`` command: every bus open, every sensor
read without a transport failure, the broker link back (when it was up before), and the
version running the one just installed. An agent that cannot start (a crash at import
fails ``systemctl restart``) or that exits while being judged fails the gate at once,
with the last error line of its journal as the reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from typing import Any

from edge.control import AgentUnreachable, request

UNIT = "linli-edge.service"
#: How often the gate asks the agent.
POLL = 0.5
#: Journal lines that say why a process died.
_EXCEPTION = re.compile(r"^[\w.]*(Error|Exception|Exit)\b.*:")
_FAILURE = re.compile(r"error|failed|exited", re.IGNORECASE)


class AgentService:
    """``linli-edge.service`` and the control socket at ``socket`` of the agent it runs."""

    def __init__(self, socket: str, unit: str = UNIT):
        self.socket = socket
        self.unit = unit

    def readiness(self) -> dict[str, Any] | None:
        """The agent's own account of its health (``readiness``), or None when no agent answers."""
        try:
            reply = request(self.socket, "readiness", timeout=3.0)
        except AgentUnreachable:
            return None
        return reply.get("result") if reply.get("ok") else None

    def restart_and_judge(self, version: str, deadline: float, need_broker: bool) -> list[str]:
        """Restart the unit and wait up to ``deadline`` s for it to be healthy on ``version``; what is not."""
        started = time.time()
        end = time.monotonic() + deadline
        result = _systemctl("restart", self.unit, timeout=deadline + 30)
        if result.returncode != 0:
            return [f"the agent did not start: {self._why(started) or result.stderr.strip()}"]
        pid = self._show().get("MainPID")
        while True:
            shown = self._show()
            if shown.get("ActiveState") != "active" or shown.get("MainPID") != pid:
                return [f"the agent exited after starting (status {shown.get('ExecMainStatus', '?')}): "
                        f"{self._why(started) or 'see journalctl -u ' + self.unit}"]
            problems = self._problems(version, need_broker)
            if not problems or time.monotonic() >= end:
                return problems
            time.sleep(POLL)

    def _problems(self, version: str, need_broker: bool) -> list[str]:
        ready = self.readiness()
        if ready is None:
            return [f"the agent does not answer on {self.socket}"]
        if ready.get("version") != version:
            return [f"version {ready.get('version')} runs, not {version}"]
        problems = list(ready.get("problems") or [])
        broker = ready.get("broker") or {}
        if need_broker and not broker.get("connected"):
            problems.append(f"the broker link is not back: {broker.get('last_error') or 'not connected yet'}")
        return problems

    def _show(self) -> dict[str, str]:
        out = _systemctl("show", self.unit, "--property=ActiveState,MainPID,ExecMainStatus", timeout=10).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def _why(self, since: float) -> str:
        """The last line of the unit's journal since ``since`` that says why it failed ("" without journalctl)."""
        journalctl = shutil.which("journalctl")
        if journalctl is None:
            return ""
        try:
            # The agent's own lines only: systemd's about the unit (``-u`` shows them too) say less.
            out = subprocess.run([journalctl, f"_SYSTEMD_UNIT={self.unit}", f"--since=@{int(since)}", "--output=cat",
                                  "--no-pager", "--lines=60"], capture_output=True, text=True, timeout=10,
                                 check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        exceptions = [line for line in lines if _EXCEPTION.match(line)]
        failing = [line for line in lines if _FAILURE.search(line)]
        return (exceptions or failing or lines or [""])[-1][:500]


def _systemctl(*args: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(["systemctl", *args], 1, "", f"systemctl {args[0]} took over {timeout:g} s")
    except OSError as exc:
        return subprocess.CompletedProcess(["systemctl", *args], 1, "", f"systemctl: {exc}")
