"""A real mosquitto running the shipped deploy/mosquitto configuration, and clients holding deploy/pki certificates.

:class:`TlsBroker` starts mosquitto with ``linli-broker.conf`` and the ``acl`` (and
optionally more shipped ``conf.d`` files, such as the street bridge), exactly as
shipped except that ``/etc/mosquitto/linli/`` becomes a temporary directory, the
listener moves to a free loopback port and the log goes to a file. Used by
tests/test_deploy.py, tests/test_acl_fleet.py and tests/test_bridge.py.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PKI_SCRIPTS = DEPLOY / "pki"
BROKER_CONF = DEPLOY / "mosquitto" / "linli-broker.conf"
BROKER_ACL = DEPLOY / "mosquitto" / "acl"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
#: Where the shipped files expect the broker's certificates and ACL.
SHIPPED_DIR = "/etc/mosquitto/linli/"


def sh(*cmd, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], check=False, capture_output=True, text=True, timeout=60, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def base(grid: str, gateway: str) -> str:
    return f"linli/{grid}/{gateway}"


def make_pki(directory: Path, client_ids: Iterable[str]) -> Path:
    """A community CA made by deploy/pki, a server certificate for 127.0.0.1 and a client certificate per name."""
    sh(PKI_SCRIPTS / "make-ca.sh", "--pki", directory)
    sh(PKI_SCRIPTS / "make-server-cert.sh", "--pki", directory, "127.0.0.1", "localhost")
    for name in client_ids:
        sh(PKI_SCRIPTS / "make-gateway-cert.sh", "--pki", directory, name)
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TlsBroker:
    """mosquitto with deploy/mosquitto/linli-broker.conf and acl, files moved into ``workdir``.

    ``conf_d`` adds more shipped files of ``/etc/mosquitto/conf.d/``, read in name order as mosquitto's
    ``include_dir`` does; ``replace`` maps other text of those files (an address) to its test value;
    ``extra_conf`` appends settings the test needs besides the shipped ones, ``extra_ports`` the ports of
    the listeners it adds (``start`` waits for them too).
    """

    def __init__(self, workdir: Path, pki: Path, *, conf_d: Iterable[Path] = (),
                 replace: dict[str, str] | None = None, extra_conf: str = "", extra_ports: Iterable[int] = ()):
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir, self.pki = workdir, pki
        self.port = free_port()
        self.extra_ports = tuple(extra_ports)
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(pki / "ca.crt", workdir / "ca.crt")
        shutil.copy(pki / "crl.pem", workdir / "crl.pem")
        shutil.copy(pki / "servers" / "127.0.0.1.crt", workdir / "server.crt")
        shutil.copy(pki / "servers" / "127.0.0.1.key", workdir / "server.key")
        shutil.copy(BROKER_ACL, workdir / "acl")
        conf = "\n".join(path.read_text() for path in sorted([BROKER_CONF, *conf_d], key=lambda p: p.name))
        for shipped, test_value in (replace or {}).items():
            assert shipped in conf, shipped
            conf = conf.replace(shipped, test_value)
        assert SHIPPED_DIR in conf
        conf = conf.replace(SHIPPED_DIR, f"{workdir}/")
        conf, listeners = re.subn(r"^listener 8883$", f"listener {self.port} 127.0.0.1", conf,
                                  flags=re.MULTILINE)
        assert listeners == 1
        self.log = workdir / "mosquitto.log"
        conf += f"\npersistence false\nlog_dest file {self.log}\nlog_type all\n{extra_conf}"
        if os.geteuid() == 0:
            conf += "user root\n"      # else mosquitto drops to user "mosquitto", who cannot read tmp_path
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited {self.proc.returncode}: {self.proc.stderr.read()!r}\n"
                                     f"{self.log.read_text() if self.log.exists() else ''}")
            try:
                for port in (self.port, *self.extra_ports):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("mosquitto did not listen within 10 s")

    def reload(self) -> None:
        """SIGHUP, then wait until the log says the config was reloaded."""
        marker = self.log.read_text().count("Reloading config")
        self.proc.send_signal(1)
        deadline = time.monotonic() + 10
        while self.log.read_text().count("Reloading config") == marker:
            assert time.monotonic() < deadline, "mosquitto did not reload"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc is not None:
            self.proc.stderr.close()


class ConnectRefused(Exception):
    pass


class Client:
    """A paho client holding one certificate of the PKI; events arrive on ``self.events``.

    With ``password`` it connects instead to the plain listener on ``port`` under the username ``name``
    (tests/test_acl_fleet.py explains when that stands for a certificate).
    """

    def __init__(self, broker: TlsBroker, name: str, *, protocol=mqtt.MQTTv5, pki: Path | None = None,
                 with_cert: bool = True, password: str | None = None, port: int | None = None):
        pki = pki or broker.pki
        self.events: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"{name}-{uuid.uuid4().hex[:8]}", protocol=protocol)
        cert = pki / "gateways" / f"{name}.crt"
        if password is not None:
            self.c.username_pw_set(name, password)
        elif with_cert:
            self.c.tls_set(ca_certs=str(broker.pki / "ca.crt"), certfile=str(cert),
                           keyfile=str(cert.with_suffix(".key")))
        else:
            self.c.tls_set(ca_certs=str(broker.pki / "ca.crt"))
        self.c.on_connect = lambda c, u, f, rc, p: self.events.put(("connect", rc))
        self.c.on_disconnect = lambda c, u, f, rc, p: self.events.put(("disconnect", rc))
        self.c.on_publish = lambda c, u, mid, rc, p: self.events.put(("puback", mid, rc))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.events.put(("suback", mid, rcs))
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        try:
            self.c.connect("127.0.0.1", port or broker.port, keepalive=30)
        except (ssl.SSLError, OSError) as exc:
            raise ConnectRefused(repr(exc)) from exc
        self.c.loop_start()
        event = self._next_event()
        if event[0] != "connect" or event[1].is_failure:
            self.close()
            raise ConnectRefused(repr(event))

    def _next_event(self):
        try:
            return self.events.get(timeout=10)
        except queue.Empty:
            raise AssertionError("no answer from the broker within 10 s") from None

    def publish(self, topic: str, payload: bytes = b"{}", *, retain: bool = False) -> str:
        """QoS 1 publish; ``"accepted"`` or the PUBACK's failure reason (``"Not authorized"``).

        MQTT 5 success codes include "No matching subscribers", which is still accepted.
        """
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        event = self._next_event()
        assert event[0] == "puback" and event[1] == info.mid, event
        return event[2].getName() if event[2].is_failure else "accepted"

    def subscribe(self, topic_filter: str) -> None:
        self.c.subscribe(topic_filter, qos=1)
        event = self._next_event()
        assert event[0] == "suback" and not event[2][0].is_failure, event

    def next_message(self) -> tuple[str, bytes]:
        try:
            return self.messages.get(timeout=10)
        except queue.Empty:
            raise AssertionError("expected a message within 10 s") from None

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
