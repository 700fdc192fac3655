"""The control socket: how the local ``linli`` command talks to the running agent.

A Unix stream socket (mode 0660, so only root and the service's group reach
it). One request per connection, one JSON line each way: the client sends
``{"name": "away", "args": {...}}``, the agent answers with the same reply a
central operator gets for ``cmd/<name>`` — both go through one command table
(:class:`edge.commands.Commands`), so the local and the remote face cannot
drift apart.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from edge.commands import Commands
from edge.errors import LinliError
from edge.i18n import _

log = logging.getLogger("linli.control")

EX_UNAVAILABLE = 69
#: A client that neither sends a line nor hangs up within this long is dropped.
CLIENT_TIMEOUT = 5.0
MAX_REQUEST = 64 * 1024


class AgentUnreachable(LinliError):
    """No agent answers on the control socket."""

    exit_code = EX_UNAVAILABLE


class ControlServer(threading.Thread):
    """Serves ``commands`` on a Unix socket at ``path`` until :meth:`stop`."""

    def __init__(self, path: str, commands: Commands):
        super().__init__(name="linli-control", daemon=True)
        self.path = path
        self.commands = commands
        self.heartbeat = time.monotonic()
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None

    def open(self) -> None:
        """Bind the socket (replacing a stale one left by a killed agent); raises OSError when it cannot."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if os.path.exists(self.path) and _answers(self.path):
            raise OSError(f"another agent already serves {self.path}")
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o660)
        sock.listen(4)
        sock.settimeout(1.0)  # wake up to beat the heartbeat and notice stop
        self._sock = sock

    def run(self) -> None:
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                conn, _addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_TIMEOUT)
        try:
            line = _read_line(conn)
            request = json.loads(line)
            name = request["name"]
            if not isinstance(name, str) or "/" in name:
                raise ValueError("name")
            payload = json.dumps({"v": 1, "gateway": self.commands.gateway, "id": f"local-{uuid.uuid4()}",
                                  "name": name, "args": request.get("args", {})}).encode()
            reply = self.commands.handle(name, payload)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        try:
            conn.sendall(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        except OSError as exc:
            log.debug("control client went away before its reply: %s", exc)

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            self._sock.close()
        if self.is_alive():
            self.join(3)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


def request(path: str, name: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the running agent; returns its reply (``ok`` with ``result`` or ``error``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(json.dumps({"name": name, "args": args or {}}).encode() + b"\n")
            line = _read_line(sock)
        except FileNotFoundError:
            raise AgentUnreachable(_("the agent is not running: no control socket at {path} "
                                     "(systemctl status linli-edge)").format(path=path)) from None
        except PermissionError:
            raise AgentUnreachable(_("no permission to use {path}: run as root or as a member of the "
                                     "linli group").format(path=path)) from None
        except OSError as exc:
            raise AgentUnreachable(_("the agent did not answer on {path}: {error}").format(
                path=path, error=exc)) from None
    try:
        return json.loads(line)
    except ValueError:
        raise AgentUnreachable(_("the agent sent an unreadable answer on {path}").format(path=path)) from None
