"""LocalBroker: a real mosquitto (or the amqtt fallback) on a free loopback port, restartable on the same port."""

from __future__ import annotations

import queue
import shutil
import subprocess

import paho.mqtt.client as mqtt
import pytest

from edge.simulate.broker import (
    BrokerStartError,
    LocalBroker,
    TlsListener,
    accepts_connections,
)

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def roundtrip(host: str, port: int, *, tls: dict | None = None, username: str | None = None,
              password: str | None = None, protocol=mqtt.MQTTv311) -> bytes:
    """Publish a retained QoS 1 message and read it back with a second connection; returns the payload."""
    def client() -> mqtt.Client:
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
        if tls:
            c.tls_set(**tls)
        if username:
            c.username_pw_set(username, password)
        return c

    pub = client()
    pub.connect(host, port, keepalive=10)
    pub.loop_start()
    try:
        info = pub.publish("linli/test/probe", b"hello", qos=1, retain=True)
        info.wait_for_publish(5)
        assert info.is_published()
    finally:
        pub.disconnect()
        pub.loop_stop()
    received: queue.Queue = queue.Queue()
    sub = client()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("linli/test/#", qos=1)
    sub.on_message = lambda c, u, m: received.put(m.payload)
    sub.connect(host, port, keepalive=10)
    sub.loop_start()
    try:
        return received.get(timeout=5)
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_mosquitto_starts_on_a_free_loopback_port_and_serves(broker):
    assert broker.kind == "mosquitto"
    assert broker.host == "127.0.0.1" and broker.port > 0
    assert roundtrip(broker.host, broker.port) == b"hello"
    config = (broker.workdir / "mosquitto.conf").read_text()
    assert f"listener {broker.port} 127.0.0.1" in config
    assert "persistence false" in config and "allow_anonymous true" in config
    assert "mosquitto version" in broker.log_text()


def test_two_brokers_get_different_ports(broker_factory):
    first, second = broker_factory(), broker_factory()
    assert first.port != second.port
    assert roundtrip(second.host, second.port) == b"hello"


def test_stop_then_start_comes_back_on_the_same_port(broker):
    port = broker.port
    broker.stop()
    assert not broker.running
    assert not accepts_connections(broker.host, port)
    broker.start()
    assert broker.port == port and broker.running
    assert roundtrip(broker.host, port) == b"hello"


def test_kill_ends_the_process_at_once_and_it_can_start_again(broker):
    proc = broker._proc
    broker.kill()
    assert proc.returncode == -9
    assert not accepts_connections(broker.host, broker.port)
    broker.start()
    assert roundtrip(broker.host, broker.port) == b"hello"


def test_no_persistence_across_a_restart(broker):
    roundtrip(broker.host, broker.port)
    broker.stop()
    broker.start()
    received: queue.Queue = queue.Queue()
    sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    sub.on_subscribe = lambda c, u, mid, rcs, p: received.put("subscribed")
    sub.on_message = lambda c, u, m: received.put(m.payload)
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    try:
        sub.subscribe("linli/test/#", qos=1)
        assert received.get(timeout=5) == "subscribed"
        # mosquitto sends retained messages right after the SUBACK, on the same connection; the PUBACK of
        # a later publish of ours can only arrive after them, so waiting for it proves none was retained.
        probe = sub.publish("linli/other", b"x", qos=1)
        probe.wait_for_publish(5)
        assert received.empty()
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_fixed_port_is_used(broker_factory):
    from edge.simulate.broker import free_port
    port = free_port()
    assert broker_factory(port=port).port == port


def test_a_port_in_use_is_a_clear_error(broker, broker_factory):
    with pytest.raises(BrokerStartError, match=rf"did not start on 127.0.0.1:{broker.port}"):
        broker_factory(port=broker.port)


@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is not installed")
def test_password_file_refuses_anonymous_and_wrong_passwords(tmp_path, broker_factory):
    passwords = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(passwords), "gw-test", "right"], check=True)
    secured = broker_factory(password_file=str(passwords))
    assert roundtrip(secured.host, secured.port, username="gw-test", password="right") == b"hello"
    for username, password in ((None, None), ("gw-test", "wrong")):
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        if username:
            c.username_pw_set(username, password)
        answers: queue.Queue = queue.Queue()
        c.on_connect = lambda cl, u, f, rc, p, answers=answers: answers.put(rc)
        c.connect(secured.host, secured.port)
        c.loop_start()
        try:
            assert answers.get(timeout=5).is_failure
        finally:
            c.loop_stop()


def test_tls_listener_requires_a_client_certificate(pki, broker_factory):
    secured = broker_factory(tls=TlsListener(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key)))
    tls = {"ca_certs": str(pki.ca_cert), "certfile": str(pki.client_cert), "keyfile": str(pki.client_key)}
    assert roundtrip(secured.host, secured.port, tls=tls) == b"hello"
    bare = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    bare.tls_set(ca_certs=str(pki.ca_cert))
    answers: queue.Queue = queue.Queue()
    bare.on_connect = lambda cl, u, f, rc, p: answers.put(rc)
    bare.on_disconnect = lambda cl, u, f, rc, p: answers.put("disconnected")
    try:
        bare.connect(secured.host, secured.port)
    except OSError:
        return          # TLS 1.2 refuses in the handshake
    bare.loop_start()   # TLS 1.3 completes the handshake, then the broker drops us on the first read
    try:
        assert answers.get(timeout=5) == "disconnected"
    finally:
        bare.loop_stop()


def test_amqtt_fallback_serves_and_restarts_on_the_same_port(broker_factory):
    embedded = broker_factory(kind="amqtt")
    assert embedded.kind == "amqtt"
    assert roundtrip(embedded.host, embedded.port) == b"hello"
    port = embedded.port
    embedded.stop()
    assert not accepts_connections(embedded.host, port)
    embedded.start()
    assert embedded.port == port
    assert roundtrip(embedded.host, port) == b"hello"


def test_auto_falls_back_to_amqtt_without_mosquitto(tmp_path, broker_factory):
    embedded = broker_factory(kind="auto", executable=str(tmp_path / "no-mosquitto"))
    assert embedded.kind == "amqtt"
    assert roundtrip(embedded.host, embedded.port) == b"hello"


def test_mosquitto_required_but_missing_says_how_to_install(tmp_path):
    with pytest.raises(BrokerStartError, match="apt-get install mosquitto"):
        LocalBroker(kind="mosquitto", executable=str(tmp_path / "no-mosquitto")).start()


def test_tls_without_mosquitto_is_refused_rather_than_silently_plain(tmp_path, pki):
    tls = TlsListener(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key))
    with pytest.raises(BrokerStartError, match="needs mosquitto.*apt-get install mosquitto"):
        LocalBroker(tls=tls, executable=str(tmp_path / "no-mosquitto")).start()


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be"):
        LocalBroker(kind="emqx")
