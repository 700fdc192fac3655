"""A local MQTT broker on loopback for ``linli demo`` and the tests.

:class:`LocalBroker` starts mosquitto on a free ``127.0.0.1`` port with a
generated config in a temporary directory (anonymous or password file, plain
or TLS, no persistence, log to a file), and only returns once the broker
accepts TCP connections. ``stop()`` / ``start()`` restart it on the same port;
``kill()`` ends it with SIGKILL, as a crash would.

Without mosquitto it falls back to amqtt (pure Python, plain TCP, anonymous
only), running its asyncio loop in a thread; ``kind`` says which one runs.

>>> with LocalBroker() as broker:
...     print(broker.kind in ("mosquitto", "amqtt"), broker.host, broker.port > 0)
True 127.0.0.1 True
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from edge.errors import LinliError
from edge.exits import EX_UNAVAILABLE

log = logging.getLogger("linli.simulate.broker")

#: Where Debian and Raspberry Pi OS put the daemon (not on a normal user's PATH).
MOSQUITTO_PLACES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
INSTALL_HINT = "install it with: sudo apt-get install mosquitto"


class BrokerStartError(LinliError):
    """No local broker could be started; the message says why and what to install."""

    exit_code = EX_UNAVAILABLE


@dataclass(frozen=True)
class TlsListener:
    """Makes the broker's listener TLS; with ``require_certificate``, clients need a cert signed by ``ca_file``."""

    ca_file: str
    cert_file: str
    key_file: str
    require_certificate: bool = True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_mosquitto(executable: str | None = None) -> str | None:
    """The mosquitto binary: ``executable`` if given (and executable), else PATH, then the usual sbin places."""
    if executable is not None:
        return executable if os.access(executable, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PLACES if os.access(p, os.X_OK)), None)


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def end_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (a broker saves its persistence file on it), then SIGKILL if it is not gone within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class LocalBroker:
    """A broker on ``host:port`` for as long as the ``with`` block (or until ``stop()``).

    ``kind``           ``"auto"`` (mosquitto, else amqtt), ``"mosquitto"`` or ``"amqtt"``;
                       after ``start()`` it is the kind actually running;
    ``tls``            a :class:`TlsListener` to make the listener TLS (mosquitto only);
    ``password_file``  a mosquitto password file (``mosquitto_passwd``); anonymous clients are refused
                       (mosquitto only);
    ``acl_file``       a mosquitto ACL file confining what clients may publish and read (mosquitto only);
    ``port``           a fixed port; default: a free one, kept across restarts;
    ``executable``     the mosquitto binary to use instead of searching for it.
    """

    def __init__(self, *, kind: str = "auto", tls: TlsListener | None = None, password_file: str | None = None,
                 acl_file: str | None = None, host: str = "127.0.0.1", port: int | None = None,
                 executable: str | None = None):
        if kind not in ("auto", "mosquitto", "amqtt"):
            raise ValueError(f'kind must be "auto", "mosquitto" or "amqtt", got {kind!r}')
        self.requested_kind = kind
        self.kind: str | None = None
        self.tls = tls
        self.password_file = password_file
        self.acl_file = acl_file
        self.host = host
        self.port = port
        self._port_fixed = port is not None
        self.executable = executable
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._amqtt: _AmqttThread | None = None

    # --- life cycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._amqtt is not None

    def start(self) -> None:
        """Start the broker (again, on the same port) and return once it accepts connections."""
        if self.running:
            return
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="linli-broker-")
            self.workdir = Path(self._tmp.name)
        if self.kind is None:
            self.kind = self._choose_kind()
        if self.kind == "mosquitto":
            self._start_mosquitto()
        else:
            self._start_amqtt()

    def stop(self) -> None:
        """Stop the broker the polite way (SIGTERM); the port stays reserved for ``start()``."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            end_process(proc)
        if self._amqtt is not None:
            runner, self._amqtt = self._amqtt, None
            runner.stop()

    def kill(self) -> None:
        """End the broker at once, like a crash (SIGKILL). amqtt runs in-process: it is stopped instead."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            self.stop()

    def close(self) -> None:
        """Stop the broker and delete its temporary directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def log_text(self) -> str:
        """What the broker logged so far (mosquitto only; empty otherwise)."""
        return self._log_bytes().decode("utf-8", "replace")

    def _log_bytes(self) -> bytes:
        try:
            return self.log_path.read_bytes() if self.log_path else b""
        except OSError:
            return b""

    # --- choosing -----------------------------------------------------------------------------------
    def _choose_kind(self) -> str:
        binary = None if self.requested_kind == "amqtt" else find_mosquitto(self.executable)
        if binary is not None:
            self.executable = binary
            return "mosquitto"
        if self.requested_kind == "mosquitto":
            searched = self.executable or "PATH, " + ", ".join(MOSQUITTO_PLACES)
            raise BrokerStartError(f"mosquitto was not found ({searched}); {INSTALL_HINT}")
        if self.tls is not None or self.password_file is not None or self.acl_file is not None:
            raise BrokerStartError(f"a local broker with TLS, a password file or an ACL needs mosquitto, which was "
                                   f"not found; {INSTALL_HINT}")
        if not _amqtt_available():
            raise BrokerStartError(f"no MQTT broker available: mosquitto was not found and amqtt is not installed; "
                                   f"{INSTALL_HINT}")
        if self.requested_kind == "auto":
            log.warning("mosquitto not found; using the embedded amqtt broker (plain TCP only)")
        return "amqtt"

    # --- mosquitto ------------------------------------------------------------------------------------
    def _write_config(self) -> Path:
        lines = [
            "# generated by linli-edge's LocalBroker for the demo and the tests",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            # A test subscriber may lag behind a burst; the default (1000 queued) would drop messages silently.
            "max_queued_messages 100000",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            # Started as root, mosquitto would switch to the "mosquitto" user, which cannot read our files.
            f"user {getpass.getuser()}",
        ]
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca_file}", f"certfile {self.tls.cert_file}", f"keyfile {self.tls.key_file}",
                      f"require_certificate {'true' if self.tls.require_certificate else 'false'}"]
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def _start_mosquitto(self) -> None:
        self.log_path = self.workdir / "mosquitto.log"
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            if self.port is None or (attempt and not self._port_fixed):
                self.port = free_port(self.host)
            config = self._write_config()
            start_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            # stderr to a file, not a pipe: nobody reads a pipe while the broker runs, and a full one blocks it.
            with open(self.workdir / "mosquitto.stderr", "wb") as stderr:
                # A session of its own: Ctrl-C in the terminal is for whoever started it, who stops it in order.
                self._proc = subprocess.Popen([self.executable, "-c", str(config)], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
            problem = self._wait_until_accepting(self._proc, start_offset)
            if problem is None:
                self._port_fixed = True     # restarts must come back on this port
                return
            self._proc = None
            log_tail = self._log_bytes()[start_offset:].decode("utf-8", "replace").strip().splitlines()[-3:]
            if any("Address already in use" in line for line in log_tail) and attempt + 1 < attempts:
                continue        # another process took the free port between our probe and mosquitto's bind
            detail = "; ".join(log_tail) or problem
            raise BrokerStartError(f"mosquitto ({self.executable}) did not start on {self.host}:{self.port}: {detail}")

    def _wait_until_accepting(self, proc: subprocess.Popen, log_offset: int) -> str | None:
        """``None`` once this mosquitto says it runs and the port accepts connections, else why not.

        The log line matters: another process already listening on the port would make the port
        check alone succeed while our mosquitto is about to exit with "Address already in use".
        """
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if b" running" in self._log_bytes()[log_offset:] and accepts_connections(self.host, self.port):
                return None
            try:
                code = proc.wait(timeout=0.02)      # also the pause between probes
            except subprocess.TimeoutExpired:
                continue
            stderr = (self.workdir / "mosquitto.stderr").read_text(encoding="utf-8", errors="replace").strip()
            return f"exited with status {code}" + (f": {stderr}" if stderr else "")
        proc.kill()
        proc.wait()
        return f"not accepting connections after {START_TIMEOUT:g} s"

    # --- amqtt ------------------------------------------------------------------------------------------
    def _start_amqtt(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)
        runner = _AmqttThread(self.host, self.port)
        runner.start()
        self._amqtt = runner
        self._port_fixed = True


def _amqtt_available() -> bool:
    try:
        import amqtt.broker  # noqa: F401
    except ImportError:
        return False
    return True


class _AmqttThread:
    """amqtt's broker on its own asyncio loop in a daemon thread."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="linli-amqtt", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise BrokerStartError(f"amqtt did not start on {self.host}:{self.port} within {START_TIMEOUT:g} s")
        if self._error is not None:
            raise BrokerStartError(f"amqtt did not start on {self.host}:{self.port}: {self._error}")

    def stop(self) -> None:
        if self._loop is not None and self._done is not None:
            with contextlib.suppress(RuntimeError):       # the loop already ended
                self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), which raises it in the caller
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from amqtt.broker import Broker

        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        await broker.start()
        self._ready.set()
        try:
            await self._done.wait()
        finally:
            await broker.shutdown()
