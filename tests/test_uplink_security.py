"""TLS with client certificates and user/password from a file, against a real mosquitto."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from buffer.outbox import Priority
from edge.simulate.broker import TlsListener
from tests.agent_helpers import config_text, linli
from tests.mqtt_helpers import alarm, reading, uplink_config, wait_until

PROTOCOLS = ["3.1.1", "5"]
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
needs_passwd = pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is not installed")


@pytest.fixture
def tls_broker(pki, broker_factory):
    return broker_factory(tls=TlsListener(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key),
                                          require_certificate=True))


def central_tls(pki) -> dict[str, str]:
    return {"ca_file": str(pki.ca_cert), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_with_client_certificate_delivers(protocol, pki, tls_broker, writer, start_uplink, subscriber_factory):
    seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(50)] +
                      [(alarm("pump-pressure", "low"), Priority.ALARM)])
    config = uplink_config(tls_broker.host, tls_broker.port, protocol=protocol, tls=True, ca_file=str(pki.ca_cert),
                           cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    central = subscriber_factory(tls_broker.host, tls_broker.port, base=config.base_topic, tls=central_tls(pki))
    uplink = start_uplink(config, writer)
    central.wait_for_seqs(seqs)
    wait_until(lambda: sorted(writer.acked) == seqs, 10, "all acknowledged")
    assert uplink.status()["connected"] and uplink.status()["last_error"] is None


def test_tls_without_client_certificate_is_not_accepted(pki, tls_broker, writer, start_uplink):
    config = uplink_config(tls_broker.host, tls_broker.port, tls=True, ca_file=str(pki.ca_cert))
    uplink = start_uplink(config, writer)
    wait_until(lambda: uplink.status()["failed_attempts"] >= 2, 15, "failed attempts")
    status = uplink.status()
    assert not status["connected"] and status["reconnects"] == 0
    where = f"{tls_broker.host}:{tls_broker.port}"
    # TLS 1.3 (today's default) lets the handshake finish and drops us after it; TLS 1.2 fails the handshake.
    assert status["last_error"] == (
        f"broker {where} closed the TLS connection before accepting it; it may require a client certificate "
        "(mqtt.cert_file)") or status["last_error"].startswith(f"TLS handshake with broker {where} failed")


def test_tls_with_a_broker_certificate_from_another_ca_is_refused(pki, tls_broker, writer, start_uplink):
    config = uplink_config(tls_broker.host, tls_broker.port, tls=True, ca_file=str(pki.other_ca_cert),
                           cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    uplink = start_uplink(config, writer)
    wait_until(lambda: uplink.status()["last_error"], 15, "an error")
    assert uplink.status()["last_error"].startswith(
        f"TLS: the certificate of broker {tls_broker.host}:{tls_broker.port} was not accepted")
    assert not uplink.status()["connected"]


def test_missing_tls_files_are_reported_and_retried(tmp_path, pki, tls_broker, writer, start_uplink):
    cert = tmp_path / "late.crt"
    config = uplink_config(tls_broker.host, tls_broker.port, tls=True, ca_file=str(pki.ca_cert),
                           cert_file=str(cert), key_file=str(pki.client_key))
    uplink = start_uplink(config, writer)
    wait_until(lambda: "cannot load the TLS files" in (uplink.status()["last_error"] or ""), 10, "the error")
    assert uplink.is_alive()
    shutil.copy(pki.client_cert, cert)      # provisioned later: picked up at the next attempt, no restart
    wait_until(lambda: uplink.status()["connected"], 15, "connected once the certificate exists")


@pytest.fixture
def password_broker(tmp_path, broker_factory):
    passwords = tmp_path / "mosquitto.passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(passwords), "gw-test", "s3cret!"], check=True)
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), "dashboard", "look"], check=True)
    return broker_factory(password_file=str(passwords))


@needs_passwd
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_password_from_file_delivers(protocol, tmp_path, password_broker, writer, start_uplink, subscriber_factory):
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret!\n")          # as `echo s3cret! > file` writes it
    seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(10)])
    config = uplink_config(password_broker.host, password_broker.port, protocol=protocol, username="gw-test",
                           password_file=str(secret))
    central = subscriber_factory(password_broker.host, password_broker.port, base=config.base_topic,
                                 username="dashboard", password="look")
    start_uplink(config, writer)
    central.wait_for_seqs(seqs)
    wait_until(lambda: sorted(writer.acked) == seqs, 10, "all acknowledged")


@needs_passwd
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_password_is_a_clear_error_in_status(protocol, tmp_path, password_broker, writer, start_uplink):
    secret = tmp_path / "mqtt-password"
    secret.write_text("not-it\n")
    config = uplink_config(password_broker.host, password_broker.port, protocol=protocol, username="gw-test",
                           password_file=str(secret))
    uplink = start_uplink(config, writer)
    wait_until(lambda: uplink.status()["last_error"], 10, "an error")
    error = uplink.status()["last_error"]
    assert error.startswith(f"broker {password_broker.host}:{password_broker.port} refused the connection: ")
    assert error.endswith(("not authorized", "bad user name or password"))
    assert not uplink.status()["connected"]


@needs_passwd
def test_missing_password_file_is_reported_then_recovered(tmp_path, password_broker, writer, start_uplink):
    secret = tmp_path / "provisioned-later"
    config = uplink_config(password_broker.host, password_broker.port, username="gw-test",
                           password_file=str(secret))
    uplink = start_uplink(config, writer)
    wait_until(lambda: uplink.status()["last_error"], 10, "an error")
    assert uplink.status()["last_error"] == \
        f"cannot read the MQTT password file {secret}: No such file or directory"
    assert uplink.is_alive() and not uplink.status()["connected"]
    secret.write_text("s3cret!")
    wait_until(lambda: uplink.status()["connected"], 10, "connected once the file exists")


# --- a FIFO where a file should be ----------------------------------------------------------------------------------
# Opening a FIFO to read waits for a writer: the uplink thread used to hang there, with its heartbeat
# stale and SIGTERM unable to stop it. `linli config check` refuses a FIFO; one put there later is reported.
@needs_passwd
def test_a_fifo_for_the_password_file_is_reported_not_waited_on(tmp_path, password_broker, writer, start_uplink):
    secret = tmp_path / "mqtt-password"
    os.mkfifo(secret)
    config = uplink_config(password_broker.host, password_broker.port, username="gw-test",
                           password_file=str(secret))
    uplink = start_uplink(config, writer)
    wait_until(lambda: uplink.status()["last_error"], 10, "an error")
    assert uplink.status()["last_error"] == (f"cannot read the MQTT password file {secret}: {secret} is a FIFO "
                                             f"(named pipe), not a regular file")
    assert time.monotonic() - uplink.heartbeat < 2, "the thread goes on beating"
    secret.unlink()
    secret.write_text("s3cret!\n")
    wait_until(lambda: uplink.status()["connected"], 15, "connected once a regular file is there")


def test_a_fifo_for_a_tls_file_is_reported_not_waited_on(tmp_path, pki, tls_broker, writer, start_uplink):
    ca = tmp_path / "ca.crt"
    os.mkfifo(ca)
    config = uplink_config(tls_broker.host, tls_broker.port, tls=True, ca_file=str(ca),
                           cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    uplink = start_uplink(config, writer)
    wait_until(lambda: uplink.status()["last_error"], 10, "an error")
    assert uplink.status()["last_error"].endswith(f"{ca} is a FIFO (named pipe), not a regular file")
    ca.unlink()
    shutil.copy(pki.ca_cert, ca)
    wait_until(lambda: uplink.status()["connected"], 15, "connected once a regular file is there")


def test_linli_run_stops_on_sigterm_with_a_fifo_swapped_in_for_the_password_file(tmp_path):
    """The issue's row as a process: the file passes the check, becomes a FIFO, and SIGTERM still stops the agent."""
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret!\n")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        # Bound and never listening: every attempt is refused, and no other test can be given this port.
        closed.bind(("127.0.0.1", 0))
        config = tmp_path / "edge.toml"
        # The uplink tries again every few hundred ms, reading the password file each time.
        config.write_text(config_text(port=closed.getsockname()[1], outbox=tmp_path / "outbox.db",
                                      serial_port="/dev/ttyNONE",
                                      mqtt_extra=f'username = "gw-e2e"\npassword_file = "{secret}"'))
        log = tmp_path / "agent.log"
        with open(log, "wb") as sink:
            agent = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=sink)
        try:
            wait_until(lambda: b"cannot connect to broker" in log.read_bytes(), 20, "a failed attempt")
            secret.unlink()
            os.mkfifo(secret)
            wait_until(lambda: b"is a FIFO (named pipe), not a regular file" in log.read_bytes(), 20,
                       "the FIFO refused")
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    assert agent.returncode == 0, log.read_text()
