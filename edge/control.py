"""The control socket: how the local ``linli`` command talks to the running agent.

A Unix stream socket (mode 0660, so only root and the service's group reach
it). One request per connection, one JSON line each way: the client sends
``{"name": "away", "args": {...}}``, the agent answers with the same reply a
central operator gets for ``cmd/<name>`` — both go through one command table
(:class:`edge.commands.Commands`), so the local and the remote face cannot
drift apart.

Clients are served at once, each on its own short-lived thread, up to
:data:`MAX_CLIENTS` at a time: idle or slow clients cannot lock a technician
out. Each has :data:`READ_DEADLINE` seconds for its whole request line (a
client trickling a byte at a time is cut off when it runs out) and
:data:`SEND_TIMEOUT` for taking its reply; a client beyond the bound gets an
immediate ``busy`` reply, which :func:`request` retries. The accepting thread
does nothing that can block, so its heartbeat — watched by the agent before it
feeds the systemd watchdog — stays fresh whatever clients do.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from edge.commands import MAX_REQUEST, Commands, RequestError, parse
from edge.errors import LinliError
from edge.exits import EX_UNAVAILABLE
from edge.i18n import _

log = logging.getLogger("linli.control")

#: Clients served at the same time; more get a ``busy`` reply at once.
MAX_CLIENTS = 8
#: From accepting a connection to the end of its request line: a whole-request deadline, not a per-read timeout.
READ_DEADLINE = 5.0
#: How long a client may take to read its reply.
SEND_TIMEOUT = 5.0
#: Largest reply the ``linli`` command reads (a status with every sensor is a few kilobytes).
MAX_REPLY = 1024 * 1024
#: Connections the kernel queues while the accepting thread is busy for a moment.
BACKLOG = 64


class AgentUnreachable(LinliError):
    """No agent answers on the control socket."""

    exit_code = EX_UNAVAILABLE


class ControlServer(threading.Thread):
    """Serves ``commands`` on a Unix socket at ``path`` until :meth:`stop`.

    ``heartbeat`` is the ``time.monotonic()`` of the accepting loop's last turn; ``error``
    is what ended the thread if something did.
    """

    def __init__(self, path: str, commands: Commands, *, max_clients: int = MAX_CLIENTS,
                 read_deadline: float = READ_DEADLINE):
        super().__init__(name="linli-control", daemon=True)
        self.path = path
        self.commands = commands
        self.max_clients = max_clients
        self.read_deadline = read_deadline
        self.heartbeat = time.monotonic()
        self.error: BaseException | None = None
        self._slots = threading.BoundedSemaphore(max_clients)
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._bound: tuple[int, int] | None = None   # (st_dev, st_ino) of the socket file this server made

    def open(self) -> None:
        """Bind the socket (replacing a stale one left by a killed agent); raises OSError when it cannot.

        Only a socket nobody answers on is replaced: a live agent's socket, or any other kind of
        file at ``path``, is left alone and refused.
        """
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            made = os.stat(self.path)
            os.chmod(self.path, 0o660)
            sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(1.0)  # wake up to beat the heartbeat and notice stop
        self._bound = (made.st_dev, made.st_ino)
        self._sock = sock

    def run(self) -> None:
        try:
            self._accept_until_stopped()
        except BaseException as exc:  # the agent's supervision ends the process; say why first
            self.error = exc
            log.exception("control thread failed")

    def _accept_until_stopped(self) -> None:
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
            if not self._slots.acquire(blocking=False):
                self._refuse(conn, f"the agent already serves {self.max_clients} local clients")
                continue
            try:
                threading.Thread(target=self._serve, args=(conn,), name="linli-control-client", daemon=True).start()
            except RuntimeError as exc:  # no thread to be had: this client is refused, the server goes on
                self._slots.release()
                self._refuse(conn, f"the agent cannot take a client now ({exc})")

    @staticmethod
    def _refuse(conn: socket.socket, why: str) -> None:
        """An immediate ``busy`` reply that cannot block the accepting thread, then close."""
        with conn:
            conn.setblocking(False)
            try:
                conn.sendall(_line({"ok": False, "busy": True, "error": f"{why}; try again in a few seconds"}))
            except OSError:
                pass  # a full or closed socket: the client sees the connection close instead

    def _serve(self, conn: socket.socket) -> None:
        """One client, on its own thread: read the request line within the deadline, answer, close."""
        try:
            with conn:
                try:
                    reply = self._answer(_read_line(conn, time.monotonic() + self.read_deadline, MAX_REQUEST))
                except TimeoutError:
                    reply = _bad(f"no complete request line within {self.read_deadline:g} s")
                except ValueError as exc:
                    reply = _bad(str(exc))
                conn.settimeout(SEND_TIMEOUT)
                conn.sendall(_line(reply))
        except OSError as exc:
            log.debug("control client went away before its reply: %s", exc)
        finally:
            self._slots.release()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = parse(line)
        except RequestError as exc:
            return _bad(str(exc))
        name = request.get("name") if isinstance(request, dict) else None
        if not isinstance(name, str) or not name or "/" in name:
            return _bad('expected {"name": "<command>", "args": {...}} on one line')
        return self.commands.answer(name, {"v": 1, "gateway": self.commands.gateway, "id": f"local-{uuid.uuid4()}",
                                           "name": name, "args": request.get("args", {})})

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way; close() alone does not
            except OSError:
                pass
            self._sock.close()
        if self.is_alive():
            self.join(3)
        try:
            current = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (current.st_dev, current.st_ino) == self._bound:  # never a file someone put there since
            os.unlink(self.path)


def _bad(why: str) -> dict[str, Any]:
    return {"ok": False, "error": f"bad request: {why}"}


def _line(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, ensure_ascii=False).encode() + b"\n"


def _read_line(conn: socket.socket, deadline: float, limit: int) -> bytes:
    """The bytes before the first newline or the end; TimeoutError at ``deadline``, ValueError past ``limit``."""
    data = bytearray()
    while b"\n" not in data and len(data) <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        conn.settimeout(left)
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    line = bytes(data.split(b"\n", 1)[0])
    if len(line) > limit:
        raise ValueError(f"the line is longer than {limit} bytes")
    return line


def _remove_stale_socket(path: str) -> None:
    """Remove what a killed agent left at ``path``; OSError if it is not a socket or an agent still answers on it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; it is left alone")
    if served(path):
        raise OSError(f"another agent already serves {path}")
    os.unlink(path)


def served(path: str) -> bool:
    """Whether some live process answers on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


def request(path: str, name: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the running agent; returns its reply (``ok`` with ``result`` or ``error``).

    A ``busy`` reply (every client slot taken) is retried until ``timeout`` runs out, then
    raises :class:`AgentUnreachable` like an agent that does not answer.
    """
    deadline = time.monotonic() + timeout
    pause = 0.1
    while True:
        reply = _ask_once(path, name, args or {}, deadline)
        if not reply.get("busy"):
            return reply
        if time.monotonic() + pause >= deadline:
            raise AgentUnreachable(_("the agent on {path} stayed busy with other local clients for {timeout:g} s; "
                                     "try again").format(path=path, timeout=timeout))
        time.sleep(pause)  # slots free up as the clients ahead finish or run out of time
        pause = min(pause * 2, 1.0)


def _ask_once(path: str, name: str, args: dict[str, Any], deadline: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            sock.connect(path)
            try:
                sock.sendall(_line({"name": name, "args": args}))
            except (BrokenPipeError, ConnectionResetError):
                pass  # a busy agent answers and hangs up before reading: its reply still waits to be read
            line = _read_line(sock, deadline, MAX_REPLY)
        except FileNotFoundError:
            raise AgentUnreachable(_("the agent is not running: no control socket at {path} "
                                     "(systemctl status linli-edge)").format(path=path)) from None
        except PermissionError:
            raise AgentUnreachable(_("no permission to use {path}: run as root or as a member of the "
                                     "linli group").format(path=path)) from None
        except (OSError, ValueError) as exc:
            raise AgentUnreachable(_("the agent did not answer on {path}: {error}").format(
                path=path, error=str(exc) or _("timed out"))) from None
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise AgentUnreachable(_("the agent sent an unreadable answer on {path}").format(path=path))
    return reply
