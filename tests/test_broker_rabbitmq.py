"""The agent's contract with its broker, held to on two brokers: mosquitto and RabbitMQ's MQTT plugin.

The same test runs against both (``any_broker``): readings delivered at QoS 1 with contiguous seqs, the
retained ``online`` status, the Last Will on an unclean end and ``offline`` on a clean stop, command
requests and their replies, a cut link and a broker restart without an unexplained gap, TLS with a client
certificate. The RabbitMQ node is a real one (tests/rabbitmq_broker.py), one per module because it takes
seconds to boot; every test uses a gateway id of its own, since that node keeps retained messages from
test to test. The tests marked RabbitMQ-only pin the differences deploy/rabbitmq/README.md describes.
"""

from __future__ import annotations

import itertools
import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from buffer.outbox import Priority
from edge import topics
from edge.control import request
from edge.simulate.broker import TlsListener
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import GATEWAY, GRID, config_text, linli
from tests.mqtt_helpers import reading, uplink_config, wait_until
from tests.rabbitmq_broker import RabbitBroker, missing_reason
from tests.tcp_proxy import TcpProxy

BROKERS = ["mosquitto", "rabbitmq"]
_gateway_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def rabbit(pki):
    """One RabbitMQ node for the module, with a TLS listener; the client certificate's CN is a user."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    tls = TlsListener(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key), require_certificate=True)
    with RabbitBroker(tls=tls) as node:
        node.add_user("gw-test")
        yield node


@pytest.fixture(params=BROKERS)
def any_broker(request):
    """A fresh mosquitto, or the module's RabbitMQ node: both have ``host``, ``port``, ``stop()``, ``start()``."""
    return request.getfixturevalue("broker" if request.param == "mosquitto" else "rabbit")


@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


@pytest.fixture
def gateway() -> str:
    """A gateway id no other test on the shared node has used."""
    return f"gw-contract-{next(_gateway_numbers)}"


def base_of(gateway: str) -> str:
    return topics.base_topic("linli", GRID, gateway)


@contextmanager
def agent(tmp_path: Path, port: int, transmitter, gateway: str) -> Iterator[subprocess.Popen]:
    """``linli run`` for ``gateway`` talking to ``127.0.0.1:port``; killed at the end if still running."""
    config = tmp_path / "edge.toml"
    config.write_text(config_text(port=port, outbox=tmp_path / "outbox.db", serial_port=transmitter.port,
                                  interval="100ms").replace(f'id = "{GATEWAY}"', f'id = "{gateway}"'))
    log = tmp_path / "agent.log"
    with open(log, "wb") as err:
        proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_cleanly(proc: subprocess.Popen, tmp_path: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, (tmp_path / "agent.log").read_text()


def states(messages) -> list[str]:
    return [m.payload["state"] for m in messages if m.kind == "status"]


def online_count(n: int):
    return lambda messages: states(messages).count("online") >= n


def unexplained(sub) -> list[int]:
    """Seqs from 1 to the highest seen that neither arrived nor are covered by a ``dropped`` record."""
    seqs = set(sub.seqs())
    return sorted(set(range(1, max(seqs, default=0) + 1)) - seqs - sub.explained_seqs())


def retained_status(any_broker, subscriber_factory, gateway: str):
    """What a subscriber arriving now gets on the exact status topic (a wildcard would not do on RabbitMQ 3.10)."""
    base = base_of(gateway)
    late = subscriber_factory(any_broker.host, any_broker.port, topics.status(base), base=base)
    [status] = late.wait_for(lambda ms: ms, what="the retained status")
    return status


# --- the contract, on both brokers --------------------------------------------------------------------------
def test_readings_arrive_in_order_online_is_retained_and_a_clean_stop_says_offline(
        tmp_path, any_broker, transmitter, gateway, subscriber_factory):
    base = base_of(gateway)
    live = subscriber_factory(any_broker.host, any_broker.port, base + "/#")
    with agent(tmp_path, any_broker.port, transmitter, gateway) as proc:
        live.wait_for(lambda _m: len(set(live.seqs())) >= 10, 30, "ten readings")
        assert states(live.messages())[0] == "online"
        status = retained_status(any_broker, subscriber_factory, gateway)
        assert status.retain and status.payload["state"] == "online" and status.payload["gateway"] == gateway
        stop_cleanly(proc, tmp_path)
    live.wait_for(lambda ms: "offline" in states(ms), 10, "the offline status")
    assert unexplained(live) == []
    assert all(m.qos == 1 for m in live.messages("telemetry")), "telemetry is QoS 1 end to end"
    status = retained_status(any_broker, subscriber_factory, gateway)
    assert status.retain and status.payload["state"] == "offline"


def test_a_killed_agent_leaves_its_last_will(tmp_path, any_broker, transmitter, gateway, subscriber_factory):
    base = base_of(gateway)
    live = subscriber_factory(any_broker.host, any_broker.port, base + "/#")
    with agent(tmp_path, any_broker.port, transmitter, gateway) as proc:
        live.wait_for(online_count(1), 30, "the agent online")
        proc.kill()
        assert proc.wait(10) == -signal.SIGKILL
    live.wait_for(lambda ms: "offline" in states(ms), 10, "the Last Will")
    assert states(live.messages()) == ["online", "offline"]
    status = retained_status(any_broker, subscriber_factory, gateway)
    assert status.retain and status.payload["state"] == "offline" and status.payload["gateway"] == gateway


def test_ping_and_health_requests_get_replies(tmp_path, any_broker, transmitter, gateway, subscriber_factory):
    base = base_of(gateway)
    live = subscriber_factory(any_broker.host, any_broker.port, base + "/#")
    operator = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"operator-{gateway}")
    operator.connect(any_broker.host, any_broker.port)
    operator.loop_start()
    try:
        with agent(tmp_path, any_broker.port, transmitter, gateway) as proc:
            live.wait_for(online_count(1), 30, "the agent online")
            for name in ("ping", "health"):
                req = json.dumps({"v": 1, "gateway": gateway, "id": f"contract-{name}", "name": name})
                reply_topic = topics.command_reply(base, name)
                # The agent subscribes to its commands just after its birth message: ask until it answers.
                for _attempt in range(40):
                    operator.publish(topics.command(base, name), req, qos=1).wait_for_publish(5)
                    try:
                        live.wait_for(lambda ms, t=reply_topic: any(m.topic == t for m in ms), 0.5, "a reply")
                        break
                    except AssertionError:
                        continue
            stop_cleanly(proc, tmp_path)
    finally:
        operator.loop_stop()
        operator.disconnect()
    replies = {m.payload["name"]: m for m in live.messages("command_reply")}
    assert replies["ping"].payload["ok"] and replies["ping"].payload["result"]["pong"] is True
    assert replies["ping"].payload["id"] == "contract-ping" and replies["ping"].qos == 1
    health = replies["health"].payload
    assert health["ok"] and health["id"] == "contract-health" and "outbox" in health["result"]


def test_a_cut_link_loses_nothing_once_restored(tmp_path, any_broker, transmitter, gateway, subscriber_factory):
    base = base_of(gateway)
    live = subscriber_factory(any_broker.host, any_broker.port, base + "/#")
    with TcpProxy(any_broker.host, any_broker.port) as proxy, \
            agent(tmp_path, proxy.port, transmitter, gateway) as proc:
        live.wait_for(lambda _m: len(set(live.seqs())) >= 5, 30, "five readings")
        proxy.cut()
        live.wait_for(lambda ms: "offline" in states(ms), 30, "the Last Will when the link breaks")
        socket_path = str(tmp_path / "control.sock")
        cut_at = max(live.seqs())
        wait_until(lambda: request(socket_path, "health")["result"]["outbox"]["next_seq"] > cut_at + 10, 20,
                   "ten readings made while the link is cut")
        proxy.restore()
        live.wait_for(online_count(2), 30, "the agent back online")
        made = request(socket_path, "health")["result"]["outbox"]["next_seq"] - 1
        live.wait_for_seqs(range(1, made + 1), 30)
        stop_cleanly(proc, tmp_path)
    assert unexplained(live) == []


def test_a_broker_restart_loses_nothing(tmp_path, any_broker, transmitter, gateway, subscriber_factory):
    base = base_of(gateway)
    first = subscriber_factory(any_broker.host, any_broker.port, base + "/#")
    with TcpProxy(any_broker.host, any_broker.port) as proxy, \
            agent(tmp_path, proxy.port, transmitter, gateway) as proc:
        first.wait_for(lambda _m: len(set(first.seqs())) >= 5, 30, "five readings")
        any_broker.stop()
        restarted_ms = time.time_ns() // 1_000_000
        proxy.cut()         # the agent comes back only once `after` listens: nothing it sends goes unseen
        any_broker.start()
        after = subscriber_factory(any_broker.host, any_broker.port, base + "/#")
        proxy.restore()
        socket_path = str(tmp_path / "control.sock")
        wait_until(lambda: request(socket_path, "health")["result"]["uplink"]["connected"], 60,
                   "the agent reconnected", interval=0.1)
        made = request(socket_path, "health")["result"]["outbox"]["next_seq"] - 1
        # What the first subscriber missed while the broker was down, the outbox sends again after it.
        after.wait_for(lambda _m: set(range(1, made + 1)) <= set(first.seqs()) | set(after.seqs())
                       | first.explained_seqs() | after.explained_seqs(), 60, "every seq made before reconnecting")
        # The birth message may come before `after` subscribed, and RabbitMQ 3.10 gives a retained message
        # only to a subscription naming its exact topic: ask that way, and tell the new status by its time.
        status = retained_status(any_broker, subscriber_factory, gateway)
        assert status.payload["state"] == "online" and status.payload["ts"] >= restarted_ms
        stop_cleanly(proc, tmp_path)
    after.wait_for(lambda ms: "offline" in states(ms), 10, "the offline status")
    seqs = set(first.seqs()) | set(after.seqs())
    explained = first.explained_seqs() | after.explained_seqs()
    assert sorted(set(range(1, max(seqs) + 1)) - seqs - explained) == []


@pytest.fixture(params=BROKERS)
def tls_broker(request, pki, broker_factory):
    """``(host, tls_port, plain_port)``: mosquitto with TLS on its only port, or RabbitMQ's TLS listener."""
    if request.param == "rabbitmq":
        node = request.getfixturevalue("rabbit")
        return node.host, node.tls_port, node.port
    tls = TlsListener(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key), require_certificate=True)
    made = broker_factory(tls=tls)
    return made.host, made.port, None


def test_tls_with_a_client_certificate_delivers(pki, tls_broker, writer, start_uplink, subscriber_factory):
    host, tls_port, plain_port = tls_broker
    config = uplink_config(host, tls_port, tls=True, ca_file=str(pki.ca_cert), cert_file=str(pki.client_cert),
                           key_file=str(pki.client_key))
    central_tls = {"ca_file": str(pki.ca_cert), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    central = subscriber_factory(host, plain_port or tls_port, base=config.base_topic,
                                 tls=None if plain_port else central_tls)
    seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(50)])
    uplink = start_uplink(config, writer)
    central.wait_for_seqs(seqs)
    wait_until(lambda: sorted(writer.acked) == seqs, 10, "all acknowledged")
    assert uplink.status()["connected"] and uplink.status()["last_error"] is None


def test_tls_without_a_client_certificate_is_refused(pki, tls_broker, writer, start_uplink):
    host, tls_port, _plain = tls_broker
    uplink = start_uplink(uplink_config(host, tls_port, tls=True, ca_file=str(pki.ca_cert)), writer)
    wait_until(lambda: uplink.status()["failed_attempts"] >= 2, 20, "two refused attempts")
    assert not uplink.status()["connected"]


# --- where RabbitMQ 3.10 differs (deploy/rabbitmq/README.md) ------------------------------------------------
def test_rabbitmq_gives_a_retained_message_only_to_a_subscription_naming_its_topic(rabbit, gateway):
    topic = f"pin/{gateway}/status"
    arrived: queue.SimpleQueue = queue.SimpleQueue()
    clients = []

    def client(name: str, subscribe: str | None = None) -> mqtt.Client:
        made = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{gateway}")
        subscribed = threading.Event()
        made.on_message = lambda _c, _u, m: arrived.put((name, m.topic, m.retain))
        made.on_subscribe = lambda *_args: subscribed.set()
        made.connect(rabbit.host, rabbit.port)
        made.loop_start()
        clients.append(made)
        if subscribe:
            made.subscribe(subscribe, qos=1)
            assert subscribed.wait(10), f"no SUBACK for {subscribe}"
        return made

    try:
        publisher = client("pub")
        publisher.publish(topic, b"online", qos=1, retain=True).wait_for_publish(5)
        client("wildcard", f"pin/{gateway}/#")
        client("exact", topic)
        # A live message after both SUBACKs: each subscriber gets any retained message before it.
        publisher.publish(f"pin/{gateway}/marker", b"live", qos=1).wait_for_publish(5)
        seen = []
        while ("wildcard", f"pin/{gateway}/marker", False) not in seen or not any(s[0] == "exact" for s in seen):
            seen.append(arrived.get(timeout=10))
    finally:
        for made in clients:
            made.loop_stop()
            made.disconnect()
    assert ("exact", topic, True) in seen
    assert [s for s in seen if s[0] == "wildcard"] == [("wildcard", f"pin/{gateway}/marker", False)], \
        "the wildcard subscription got the live message only, not the retained one"


def test_rabbitmq_keeps_retained_messages_across_a_node_restart(tmp_path, rabbit, transmitter, gateway,
                                                                subscriber_factory):
    with agent(tmp_path, rabbit.port, transmitter, gateway) as proc:
        wait_until(lambda: retained_status(rabbit, subscriber_factory, gateway).payload["state"] == "online", 30,
                   "the agent online", interval=0.1)
        stop_cleanly(proc, tmp_path)
    rabbit.stop()
    rabbit.start()
    status = retained_status(rabbit, subscriber_factory, gateway)
    assert status.retain and status.payload["state"] == "offline"


def test_rabbitmq_3_10_refuses_mqtt_5(rabbit, writer, start_uplink):
    uplink = start_uplink(uplink_config(rabbit.host, rabbit.port, protocol="5"), writer)
    wait_until(lambda: uplink.status()["failed_attempts"] >= 2, 20, "two refused attempts")
    assert not uplink.status()["connected"]
    # The broker just closes the socket, as after a CONNECT on a TLS port: the hint names both causes.
    assert uplink.status()["last_error"] == (
        f"broker {rabbit.host}:{rabbit.port} closed the connection before accepting it (a TLS port while mqtt.tls "
        f"is off, the network, or a broker out of file descriptors for another client: its LimitNOFILE); or it "
        f'does not speak MQTT 5 (RabbitMQ before 3.13 does not): try mqtt.protocol = "3.1.1"')


def test_rabbitmq_closes_the_connection_of_a_publish_its_topic_permissions_deny(tmp_path, rabbit, writer,
                                                                              start_uplink, gateway):
    # Allowed to write under another gateway's topics only: the uplink's own publishes are denied.
    rabbit.add_user(gateway, password="secret", topic_write=r"^linli\.elsewhere\.", topic_read=".*")
    (tmp_path / "password").write_text("secret\n")
    seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(5)])
    config = uplink_config(rabbit.host, rabbit.port, username=gateway, password_file=str(tmp_path / "password"))
    uplink = start_uplink(config, writer)
    # The CONNECT is accepted; the first publish (the birth message) ends the connection, again and again.
    # MQTT 3.1.1 has no way to say why; the uplink reports a lost connection, and from the second one in a row
    # without a single acknowledgement, what that usually means. (A new connection clears the last error for a
    # moment: wait for the message rather than read it once.)
    hint = "it may refuse this gateway's topics (its ACL or topic permissions)"
    error = wait_until(lambda: (e := uplink.status()["last_error"]) and hint in e and e, 30,
                       "the hint about refused topics")
    assert "lost the connection" in error and "before acknowledging anything" in error, error
    assert uplink.status()["reconnects"] >= 1
    assert writer.acked == [] and writer.depth() == len(seqs), "nothing is taken as delivered"
