"""Certificate renewal against a running ``linli run`` and a mosquitto that requires client certificates.

The CA, the broker's and the gateway's first certificate are made by the shipped deploy/pki
scripts; the CA side of the renewal is ``deploy/pki/sign-csr.sh``. Everything the central side
does goes through MQTT only. The renewed pair lands in the state folder beside the outbox
(no ``$STATE_DIRECTORY`` here).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.simulate.broker import TlsListener
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, GATEWAY, ROOT, config_text
from tests.live_agent import agent_process
from tests.test_config_remote import Operator

PKI = ROOT / "deploy" / "pki"
#: The renewed certificate's validity, far from the first one's 3650 days: health tells which one is in use.
RENEWED_DAYS = 400


def pki_script(*args: str) -> str:
    done = subprocess.run(["bash", str(PKI / args[0]), *args[1:]], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def cas(tmp_path_factory):
    """The community CA (broker certificate for 127.0.0.1, the gateway's first certificate) and a CA nobody trusts."""
    root = tmp_path_factory.mktemp("pki")
    ca, other = root / "ca", root / "other-ca"
    pki_script("make-ca.sh", "--pki", str(ca))
    pki_script("make-server-cert.sh", "--pki", str(ca), "127.0.0.1")
    pki_script("make-gateway-cert.sh", "--pki", str(ca), GATEWAY)
    pki_script("make-gateway-cert.sh", "--pki", str(ca), "central")
    pki_script("make-ca.sh", "--pki", str(other))
    return ca, other


class TlsOperator(Operator):
    """The central side over TLS with its own client certificate."""

    def __init__(self, broker, sub, tls):
        self.sub = sub
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="test-operator")
        self.client.tls_set(ca_certs=tls["ca_file"], certfile=tls["cert_file"], keyfile=tls["key_file"])
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()


@pytest.fixture
def gateway(tmp_path, cas, broker_factory, subscriber_factory):
    """A TLS agent whose certificate is a copy in its etc folder; yields (etc, state tls folder, operator, start)."""
    ca, _other = cas
    broker = broker_factory(tls=TlsListener(str(ca / "ca.crt"), str(ca / "servers" / "127.0.0.1.crt"),
                                            str(ca / "servers" / "127.0.0.1.key"), require_certificate=True))
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(ca / "ca.crt", etc / "ca.pem")
    shutil.copy(ca / "gateways" / f"{GATEWAY}.crt", etc / "gw.crt")
    shutil.copy(ca / "gateways" / f"{GATEWAY}.key", etc / "gw.key")
    tls = f'tls = true\nca_file = "{etc}/ca.pem"\ncert_file = "{etc}/gw.crt"\nkey_file = "{etc}/gw.key"\n'
    with PressureTransmitterSim(unit_id=1, profile=0.35) as transmitter:
        config = etc / "edge.toml"
        config.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db", serial_port=transmitter.port,
                                      mqtt_extra=tls))
        central = {"ca_file": str(ca / "ca.crt"), "cert_file": str(ca / "gateways" / "central.crt"),
                   "key_file": str(ca / "gateways" / "central.key")}
        sub = subscriber_factory(broker.host, broker.port, BASE + "/#", tls=central)
        operator = TlsOperator(broker, sub, central)

        def start():
            return agent_process([sys.executable, "-m", "edge.cli", "--config", str(config), "run"], config,
                                 cwd=ROOT)

        try:
            yield etc, tmp_path / "tls", operator, start
        finally:
            operator.close()


def subject(request_pem: str) -> str:
    return subprocess.run(["openssl", "req", "-noout", "-subject", "-nameopt", "RFC2253"], input=request_pem,
                          capture_output=True, text=True, check=True).stdout.strip()


def sign(ca: Path, request_pem: str, folder: Path, *extra: str) -> str:
    """The request signed by the CA with the shipped script, as the central side would."""
    (folder / "req.csr").write_text(request_pem)
    pki_script("sign-csr.sh", "--pki", str(ca), "--csr", str(folder / "req.csr"), "--out", str(folder / "new.crt"),
               *extra)
    return (folder / "new.crt").read_text()


def sign_with_other_ca(other: Path, request_pem: str, folder: Path) -> str:
    (folder / "req.csr").write_text(request_pem)
    subprocess.run(["openssl", "x509", "-req", "-in", str(folder / "req.csr"), "-CA", str(other / "ca.crt"),
                    "-CAkey", str(other / "private" / "ca.key"), "-days", "30", "-out", str(folder / "other.crt")],
                   capture_output=True, check=True)
    return (folder / "other.crt").read_text()


def health(operator, request_id):
    reply = operator.ask("health", request_id)
    assert reply["ok"] is True, reply
    return reply["result"]


def test_renewed_certificate_is_installed_used_and_kept_across_a_restart(gateway, cas, tmp_path):
    ca, other = cas
    etc, tls, operator, start = gateway
    work = tmp_path / "central"
    work.mkdir()
    with start():
        operator.warm_up()
        first_days = health(operator, "health-before")["cert_expiry_days"]
        assert first_days > 3000, first_days

        made = operator.ask("cert_csr", "csr-1")
        assert made["ok"] is True, made
        assert subject(made["result"]["csr"]) == f"subject=CN={GATEWAY}"
        pending = tls / "client.key.pending"
        assert pending.stat().st_mode & 0o777 == 0o600
        assert (etc / "gw.key").exists()   # the key in use stays where it is

        foreign = operator.ask("cert_install", "install-other-ca",
                               {"cert": sign_with_other_ca(other, made["result"]["csr"], work)})
        assert foreign["ok"] is False and "did not accept a test connection" in foreign["error"], foreign

        # A request for another gateway, made with the waiting key, signed by the right CA: refused for its name.
        other_cn = subprocess.run(["openssl", "req", "-new", "-key", str(pending), "-subj", "/CN=gw-other"],
                                  capture_output=True, text=True, check=True).stdout
        wrong_name = operator.ask("cert_install", "install-other-cn", {"cert": sign(ca, other_cn, work)})
        assert wrong_name["ok"] is False and f"not CN={GATEWAY}" in wrong_name["error"], wrong_name
        assert not (tls / "client.pem").exists()
        # The refusals left the link alone: the agent still answers with its first certificate.
        still = health(operator, "health-after-refusals")
        assert still["uplink"]["connected"] is True and still["cert_expiry_days"] == pytest.approx(first_days, abs=1)

        signed = sign(ca, made["result"]["csr"], work, "--id", GATEWAY, "--days", str(RENEWED_DAYS))
        installed = operator.ask("cert_install", "install-1", {"cert": signed}, timeout=60)
        assert installed["ok"] is True and installed["result"]["connected"] is True, installed
        assert (tls / "client.pem").stat().st_mode & 0o777 == 0o600
        assert (tls / "client.pem.old").read_text().count("BEGIN CERTIFICATE") == 1
        assert not pending.exists()
        operator.warm_up()   # answered over the new connection
        after = health(operator, "health-after-install")
        assert after["uplink"]["connected"] is True
        assert after["cert_expiry_days"] == pytest.approx(RENEWED_DAYS, abs=1)

    # The configured files now hold a certificate the broker refuses: only the renewed pair can connect.
    shutil.copy(work / "other.crt", etc / "gw.crt")
    with start():
        operator.warm_up()
        restarted = health(operator, "health-after-restart")
        assert restarted["uplink"]["connected"] is True
        assert restarted["cert_expiry_days"] == pytest.approx(RENEWED_DAYS, abs=1)


def test_cert_install_without_a_waiting_key_and_unknown_key_types_are_refused(gateway):
    _etc, _tls, operator, start = gateway
    with start():
        operator.warm_up()
        reply = operator.ask("cert_install", "install-early", {"cert": "-----BEGIN CERTIFICATE-----\nAA==\n"})
        assert reply["ok"] is False and "send cert_csr first" in reply["error"], reply
        bad = operator.ask("cert_install", "install-nothing", {"cert": 42})
        assert bad["ok"] is False and "PEM" in bad["error"], bad
        rsa = operator.ask("cert_csr", "csr-rsa", {"key_type": "rsa"})
        assert rsa["ok"] is True and subject(rsa["result"]["csr"]) == f"subject=CN={GATEWAY}", rsa
        text = subprocess.run(["openssl", "req", "-noout", "-text"], input=rsa["result"]["csr"], capture_output=True,
                              text=True, check=True).stdout
        assert "rsaEncryption" in text and "2048 bit" in text
        unknown = operator.ask("cert_csr", "csr-dsa", {"key_type": "dsa"})
        assert unknown["ok"] is False and "key_type" in unknown["error"], unknown
