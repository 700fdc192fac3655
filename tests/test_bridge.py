"""A street broker bridged to a district broker with deploy/mosquitto/bridge-street-to-district.conf, for real.

Two mosquittos on loopback, both running the shipped ``linli-broker.conf`` and
``acl`` (tests/tls_broker.py); the street broker also runs the bridge file as
shipped, only its paths and the district's address replaced: the bridge reaches
the district through tests/tcp_proxy.py, so a test can cut the link between the
brokers. Every certificate comes from deploy/pki. The gateway is the real
Uplink (with its outbox and command handling) connected to the street broker;
the central side is the ``linli-audit`` identity on the district broker.
"""

from __future__ import annotations

import json
import shutil
import uuid

import paho.mqtt.client as mqtt
import pytest

from buffer.outbox import Priority
from edge.commands import Commands
from edge.config import Config, GatewayConfig, MqttConfig
from tests.mqtt_helpers import OutboxWriter, Subscriber, alarm, reading, wait_until
from tests.tcp_proxy import TcpProxy
from tests.tls_broker import DEPLOY, Client, TlsBroker, base, make_pki

BRIDGE_CONF = DEPLOY / "mosquitto" / "bridge-street-to-district.conf"
#: The district's address as shipped; the test points it at the proxy.
SHIPPED_ADDRESS = "district.linli.example:8883"
BRIDGE = "bridge-shimen2"
#: The bridge's link state at both ends, retained: "1" up, "0" down.
BRIDGE_STATE = f"$SYS/broker/connection/{BRIDGE}/state"
GATEWAY = "gw-0042"
NAMES = (GATEWAY, "gw-0043", BRIDGE, "linli-audit")


@pytest.fixture(scope="module")
def community_pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki") / "ca", NAMES)


class Brokers:
    """The district broker, the proxy in front of it, and the street broker whose bridge goes through the proxy."""

    def __init__(self, workdir, pki):
        self.pki = pki
        self.district = TlsBroker(workdir / "district", pki)
        self.district.start()
        self.link = TcpProxy("127.0.0.1", self.district.port)
        self.street = TlsBroker(workdir / "street", pki, conf_d=[BRIDGE_CONF],
                                replace={SHIPPED_ADDRESS: f"127.0.0.1:{self.link.port}"})
        for suffix in ("crt", "key"):
            shutil.copy(pki / "gateways" / f"{BRIDGE}.{suffix}", self.street.workdir / f"{BRIDGE}.{suffix}")
        self.street.start()
        self.clients: list[Client] = []

    def client(self, broker: TlsBroker, name: str, **kw) -> Client:
        client = Client(broker, name, **kw)
        self.clients.append(client)
        return client

    def tls(self, broker: TlsBroker, name: str) -> dict:
        """Certificate settings of ``name`` for the Uplink and tests.mqtt_helpers.Subscriber."""
        return {"ca_file": str(self.pki / "ca.crt"), "cert_file": str(self.pki / "gateways" / f"{name}.crt"),
                "key_file": str(self.pki / "gateways" / f"{name}.key")}

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.street.stop()
        self.link.close()
        self.district.stop()


@pytest.fixture
def brokers(tmp_path, community_pki):
    made = Brokers(tmp_path, community_pki)
    yield made
    made.close()


def bridge_states(brokers: Brokers) -> Client:
    """The audit's view of the bridge's state topic at the district; the first message is the retained state."""
    watcher = brokers.client(brokers.district, "linli-audit")
    watcher.subscribe(BRIDGE_STATE)
    return watcher


def wait_state(watcher: Client, state: bytes) -> None:
    """Wait for the bridge's state ``state`` at the district (states in between are skipped)."""
    while (message := watcher.next_message()) != (BRIDGE_STATE, state):
        assert message[0] == BRIDGE_STATE, message


def gateway_config(brokers: Brokers, grid: str) -> Config:
    return Config(GatewayConfig(id=GATEWAY, grid=grid), MqttConfig(
        host="127.0.0.1", port=brokers.street.port, protocol="5", tls=True, reconnect_min=0.05,
        reconnect_max=0.3, keepalive=5.0, health_interval=3600.0, batch_max_records=20,
        **brokers.tls(brokers.street, GATEWAY)))


def street_grid() -> str:
    """A grid path in the bridged street, of this test's own."""
    return f"shimen2/x{uuid.uuid4().hex[:6]}/b07"


def request(name: str, request_id: str) -> bytes:
    return json.dumps({"v": 1, "gateway": GATEWAY, "id": request_id, "name": name, "args": {}}).encode()


def contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_readings_status_alarms_and_commands_cross_the_bridge(brokers, start_uplink, tmp_path):
    wait_state(bridge_states(brokers), b"1")
    grid = street_grid()
    config = gateway_config(brokers, grid)
    central = Subscriber("127.0.0.1", brokers.district.port, f"{config.base_topic}/#", protocol="5",
                         tls=brokers.tls(brokers.district, "linli-audit"))
    writer = OutboxWriter(tmp_path / "outbox.db")
    try:
        seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(120)]
                          + [(alarm("pump-pressure", "low"), Priority.ALARM)])
        start_uplink(config, writer, commands=Commands(GATEWAY, {"ping": lambda args: "pong"}))
        arrived = central.wait_for_seqs(seqs)
        assert sorted(arrived) == seqs and contiguous(seqs)           # each once, none missing
        central.wait_for(lambda ms: {"status", "alarm_state"} <= {m.kind for m in ms}, what="status and alarm")
        assert central.last("status").payload["state"] == "online"
        # A command from the district reaches the gateway; its reply comes back over the bridge.
        operator = brokers.client(brokers.district, "linli-audit")
        assert operator.publish(f"{config.base_topic}/cmd/ping", request("ping", "r-1")) == "accepted"
        replies = central.wait_for(lambda ms: any(m.kind == "command_reply" for m in ms), what="the reply")
        reply = next(m.payload for m in replies if m.kind == "command_reply")
        assert (reply["id"], reply["ok"], reply["result"]) == ("r-1", True, "pong")
        # The "out" pattern covers commands too, but the bridge never sends one back where it came from:
        # an echo would have crossed the bridge before the reply.
        assert len(central.messages("command")) == 1
    finally:
        central.close()
        writer.close()
    # Retained at the district too: a consumer arriving later gets the status and the raised alarm.
    with Subscriber("127.0.0.1", brokers.district.port, f"{config.base_topic}/#", protocol="5",
                    tls=brokers.tls(brokers.district, "linli-audit")) as late:
        late.wait_for(lambda ms: {"status", "alarm_state"} <= {m.kind for m in ms}, what="the retained states")
        assert all(m.retain for m in late.messages() if m.kind in ("status", "alarm_state"))
        assert late.last("status").payload["state"] == "online"
        assert late.last("alarm_state").payload["state"] == "raised"


def test_a_cut_link_between_the_brokers_loses_no_seq(brokers, start_uplink, tmp_path):
    """The street broker acknowledges (the gateway deletes), queues for the district, and delivers after the cut."""
    states = bridge_states(brokers)
    wait_state(states, b"1")
    config = gateway_config(brokers, street_grid())
    central = Subscriber("127.0.0.1", brokers.district.port, f"{config.base_topic}/#", protocol="5",
                         tls=brokers.tls(brokers.district, "linli-audit"))
    writer = OutboxWriter(tmp_path / "outbox.db")
    try:
        start_uplink(config, writer, commands=Commands(GATEWAY, {"ping": lambda args: "pong"}))
        before = writer.add([(reading(i), Priority.TELEMETRY) for i in range(100)])
        central.wait_for_seqs(before)
        brokers.link.cut()
        wait_state(states, b"0")                   # the district saw the bridge go: its last will
        during = writer.add([(reading(i), Priority.TELEMETRY) for i in range(100, 400)]
                            + [(alarm("pump-pressure", "low"), Priority.ALARM)])
        wait_until(lambda: set(during) <= set(writer.acked), 20, "the street broker acknowledged everything")
        # A command sent at the district meanwhile waits there, in the bridge's persistent session.
        operator = brokers.client(brokers.district, "linli-audit")
        assert operator.publish(f"{config.base_topic}/cmd/ping", request("ping", "r-cut")) == "accepted"
        assert not set(during) & set(central.seqs())
        brokers.link.restore()
        arrived = central.wait_for_seqs(before + during, timeout=60)
        assert sorted(set(arrived)) == before + during and contiguous(before + during)
        replies = central.wait_for(lambda ms: any(m.kind == "command_reply" for m in ms), what="the reply")
        assert next(m.payload for m in replies if m.kind == "command_reply")["id"] == "r-cut"
        wait_state(states, b"1")
    finally:
        central.close()
        writer.close()


def test_a_street_gateway_cannot_reach_another_street_through_the_bridge(brokers):
    wait_state(bridge_states(brokers), b"1")
    central = brokers.client(brokers.district, "linli-audit")
    central.subscribe("linli/#")
    gateway = brokers.client(brokers.street, GATEWAY)
    own = base(street_grid(), GATEWAY)
    # The street's ACL binds topics to the gateway's id, not its place, so the street broker takes this;
    # the bridge forwards only linli/shimen2/#, and the district would refuse it from the bridge anyway.
    assert gateway.publish(f"{base('jiangning/x/b01', GATEWAY)}/telemetry", b"elsewhere") == "accepted"
    assert gateway.publish(f"{own}/telemetry", b"here") == "accepted"
    assert central.next_message() == (f"{own}/telemetry", b"here")


def test_the_bridge_identity_has_exactly_its_street_at_the_district(brokers):
    """What the district grants the bridge's certificate: write its street, read its street's commands."""
    central = brokers.client(brokers.district, "linli-audit")
    central.subscribe("linli/#")
    bridge = brokers.client(brokers.district, BRIDGE, protocol=mqtt.MQTTv5)
    street, other = base(street_grid(), GATEWAY), base("jiangning/x/b01", GATEWAY)
    assert bridge.publish(f"{other}/telemetry") == "Not authorized"
    assert bridge.publish(f"{other}/status") == "Not authorized"
    assert bridge.publish(f"{street}/telemetry", b"forwarded") == "accepted"
    assert central.next_message() == (f"{street}/telemetry", b"forwarded")
    bridge.subscribe("linli/#")              # granted, but only its street's commands are delivered
    for topic in (f"{other}/cmd/ping", f"{street}/cmd/ping"):
        assert central.publish(topic, topic.encode()) == "accepted"
    gateway = brokers.client(brokers.district, "gw-0043")
    telemetry = f"{base(street_grid(), 'gw-0043')}/telemetry"
    assert gateway.publish(telemetry, b"not for the bridge") == "accepted"
    # Once the audit has it, mosquitto has queued it for every subscriber: the bridge's "last" comes after.
    while central.next_message()[0] != telemetry:
        pass
    assert central.publish(f"{street}/cmd/diag", b"last") == "accepted"
    assert [bridge.next_message() for _ in range(2)] == [(f"{street}/cmd/ping", f"{street}/cmd/ping".encode()),
                                                         (f"{street}/cmd/diag", b"last")]
