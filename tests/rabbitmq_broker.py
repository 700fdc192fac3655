"""A throwaway RabbitMQ node with its MQTT plugin on loopback, for the tests that hold the agent to the
same contract on a second broker (tests/test_broker_rabbitmq.py).

Everything the node owns lives in one temporary directory: its database (``RABBITMQ_MNESIA_BASE``), logs,
``rabbitmq.conf``, ``enabled_plugins`` (``rabbitmq_mqtt`` only) and a ``HOME`` holding the Erlang cookie.
The node is ``linli-<random>@localhost`` and registers with an epmd this class starts on a private port
(``ERL_EPMD_PORT``), so a system epmd and a system RabbitMQ are never touched; that epmd is ended with the
node. AMQP is switched off: the node listens only for MQTT on ``127.0.0.1:<free port>`` (plus TLS when
asked), and its Erlang distribution port is a free one too.

Start-up takes seconds, not milliseconds (Erlang boots, and the MQTT plugin waits a random 3 to 6 s for
cluster peers before it elects itself), so the tests share one node per module.

>>> with RabbitBroker() as node:                                   # doctest: +SKIP
...     node.host, node.port, node.kind
('127.0.0.1', 40123, 'rabbitmq')
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from edge.simulate.broker import TlsListener, accepts_connections, free_port

#: Debian's package puts the real scripts here; /usr/sbin/rabbitmq-* wrap them to switch to the rabbitmq user.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT = 120.0     # a loaded 2-core CI machine has taken 30 s
STOP_TIMEOUT = 60.0
INSTALL_HINT = "install it with: sudo apt-get install rabbitmq-server (./dev does as root)"


def missing_reason() -> str | None:
    """Why no node can be started here (for ``pytest.skip``), or ``None`` when RabbitMQ is installed."""
    needed = [RABBITMQ_BIN / "rabbitmq-server", RABBITMQ_BIN / "rabbitmqctl"]
    if not all(os.access(p, os.X_OK) for p in needed):
        return f"RabbitMQ is not installed ({RABBITMQ_BIN}/rabbitmq-server); {INSTALL_HINT}"
    if shutil.which("epmd") is None:
        return f"Erlang's epmd is not on PATH; {INSTALL_HINT}"
    return None


class RabbitStartError(RuntimeError):
    """The node did not come up; the message carries the end of its log."""


class RabbitBroker:
    """A RabbitMQ node whose MQTT listener is ``host:port`` (and ``tls_port`` with ``tls``).

    Like :class:`edge.simulate.broker.LocalBroker`: ``stop()`` / ``start()`` restart it on the same ports
    and with the same database (so retained messages and durable state survive, as on a real node);
    ``kill()`` ends it with SIGKILL. MQTT clients log in as the ``guest`` user without a password
    (``mqtt.allow_anonymous``), which the config lets in from loopback; with ``tls`` the TLS listener
    demands a client certificate signed by ``tls.ca_file`` and logs the client in as the certificate's
    common name (``mqtt.ssl_cert_login``): that user must exist (``add_user``).
    """

    kind = "rabbitmq"

    def __init__(self, *, tls: TlsListener | None = None):
        self.host = "127.0.0.1"
        self.tls = tls
        self.port: int | None = None
        self.tls_port: int | None = None
        self.node = f"linli-{secrets.token_hex(4)}@localhost"
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.workdir: Path | None = None
        self._epmd: subprocess.Popen | None = None
        self._proc: subprocess.Popen | None = None
        self._env: dict[str, str] = {}
        self.started_in: float | None = None      # seconds the last start() took

    # --- life cycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the node (again, on the same ports) and return once its MQTT listener accepts connections."""
        if self.running:
            return
        began = time.monotonic()
        if self._tmp is None:
            self._prepare()
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1", "-port", self._env["ERL_EPMD_PORT"]],
                                          env=self._env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
        # Output to a file, not a pipe nobody reads. A session of its own: Ctrl-C is for pytest, which stops us.
        with open(self.workdir / "server.out", "ab") as out:
            self._proc = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=self._env, cwd=self.workdir,
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self._wait_until_accepting()
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        """Stop the node the polite way: SIGTERM to the launcher, which runs ``rabbitmqctl stop`` for us."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # Stopped while still booting, the launcher's `rabbitmqctl stop` finds no node and beam.smp outlives it.
        _kill_group(proc)

    def kill(self) -> None:
        """End the node at once, like a power cut: SIGKILL to its whole process group."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            _kill_group(proc)
            # beam.smp dies a moment after the launcher; until then its listener still answers.
            deadline = time.monotonic() + STOP_TIMEOUT
            while accepts_connections(self.host, self.port) and time.monotonic() < deadline:
                time.sleep(0.05)

    def close(self) -> None:
        """Stop the node and the epmd we started; delete the temporary directory."""
        self.stop()
        if self._epmd is not None:
            self._epmd.terminate()
            self._epmd.wait(10)
            self._epmd = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # --- administration -----------------------------------------------------------------------------------
    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl ARGS`` against this node; its output, or an AssertionError with its complaint."""
        result = subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args], env=self._env,
                                capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise AssertionError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def add_user(self, name: str, *, password: str | None = None, topic_write: str = ".*",
                 topic_read: str = ".*") -> None:
        """A user with full rights on vhost ``/`` and the given topic permissions on ``amq.topic``.

        MQTT topics become routing keys with ``/`` turned into ``.``, so the patterns are written that way:
        ``^linli\\.grid\\.gw-1\\.`` allows everything under ``linli/grid/gw-1/``.
        """
        # Without a password given, one nobody knows: the user logs in with its certificate only.
        self.ctl("add_user", name, password or secrets.token_hex(16))
        self.ctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        self.ctl("set_topic_permissions", "-p", "/", name, "amq.topic", topic_write, topic_read)

    def log_text(self) -> str:
        """What the node logged so far."""
        if self.workdir is None:
            return ""
        logs = sorted((self.workdir / "log").glob(f"{self.node}*.log"))
        return "".join(p.read_text(encoding="utf-8", errors="replace") for p in logs)

    # --- internals ---------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="linli-rabbitmq-")
        self.workdir = Path(self._tmp.name)
        for sub in ("home", "mnesia", "log"):
            (self.workdir / sub).mkdir()
        self.port = free_port(self.host)
        if self.tls is not None:
            self.tls_port = free_port(self.host)
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")        # not /etc/rabbitmq's
        (self.workdir / "rabbitmq.conf").write_text(self._config())
        w = self.workdir
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": str(w / "home"),                   # the Erlang cookie is made here
            "ERL_EPMD_PORT": str(free_port(self.host)),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(free_port(self.host)),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),      # absent: none
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(w / "rabbitmq.pid"),
        }

    def _config(self) -> str:
        lines = [
            "# generated by the tests' RabbitBroker: MQTT only, on loopback",
            "listeners.tcp = none",                               # no AMQP listener
            f"mqtt.listeners.tcp.default = {self.host}:{self.port}",
            "mqtt.allow_anonymous = true",                        # as the default user, guest ...
            "mqtt.default_user = guest",
            "mqtt.default_pass = guest",
            "loopback_users.guest = true",                        # ... who may only come from loopback
            "log.console = false",
            "log.file.level = info",
        ]
        if self.tls is not None:
            lines += [
                f"mqtt.listeners.ssl.default = {self.host}:{self.tls_port}",
                f"ssl_options.cacertfile = {self.tls.ca_file}",
                f"ssl_options.certfile = {self.tls.cert_file}",
                f"ssl_options.keyfile = {self.tls.key_file}",
                "ssl_options.verify = verify_peer",
                f"ssl_options.fail_if_no_peer_cert = {'true' if self.tls.require_certificate else 'false'}",
                "mqtt.ssl_cert_login = true",                     # the certificate's CN is the user name
                "ssl_cert_login_from = common_name",
            ]
        return "\n".join(lines) + "\n"

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while time.monotonic() < deadline:
            if all(accepts_connections(self.host, p) for p in ports):
                return
            try:
                code = self._proc.wait(timeout=0.2)       # also the pause between probes
            except subprocess.TimeoutExpired:
                continue
            self._proc = None
            raise RabbitStartError(f"RabbitMQ node {self.node} exited with status {code}: {self._tail()}")
        self.kill()
        raise RabbitStartError(f"RabbitMQ node {self.node} not accepting MQTT on {ports} after "
                               f"{START_TIMEOUT:g} s: {self._tail()}")

    def _tail(self) -> str:
        out = (self.workdir / "server.out").read_text(encoding="utf-8", errors="replace")
        return " | ".join((out + self.log_text()).strip().splitlines()[-8:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)     # the launcher shell, beam.smp and its port programs
    except ProcessLookupError:
        pass
    proc.wait()
