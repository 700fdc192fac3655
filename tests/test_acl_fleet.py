"""The shipped ACL keeps 50 gateways on 6 grid depths apart: no gateway writes under another or reads its commands.

A certificate per gateway would make this test slow, so the broker under test
runs the shipped ``linli-broker.conf`` and ``acl`` (tests/tls_broker.py) plus one
test-only plain listener on loopback whose clients log in with a password,
username = gateway id. That stands for a certificate because mosquitto checks
the ACL against the client's *username* only: ``use_identity_as_username`` makes
the certificate's CN the username, a password login sets it from CONNECT, and
``%u`` in the acl's patterns is that username either way. Both listeners share the
one ``acl_file`` (``per_listener_settings false``), and certificate clients skip
the password file. The certificate path itself is checked here too (one gateway
and the audit over TLS in the same broker) and for every rule in
tests/test_deploy.py.

To show that something was *not* delivered without sleeping: mosquitto keeps one
client's messages in order, so a denied publish followed by an allowed one from
the same client would have arrived before the allowed one.
"""

from __future__ import annotations

import uuid

import pytest

from tests.tls_broker import Client, ConnectRefused, TlsBroker, base, free_port, make_pki, sh

FLEET = 50
PASSWORD = "fleet-test"
#: Gateway topics relative to the base topic: what another gateway must never write.
GATEWAY_TOPICS = ("status", "telemetry", "alarm", "alarm/pump-pressure/low", "event", "health", "cmd/read-now/reply")


def fleet_grid(index: int, run: str) -> str:
    """Gateway ``index``'s grid path: depths 1 to 6 in turn, a street of this test run's own."""
    depth = index % 6 + 1
    return "/".join([f"street-{run}", *(f"l{level}-{index % 3}" for level in range(1, depth))])


@pytest.fixture(scope="module")
def fleet_broker(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fleet-broker")
    pki = make_pki(workdir / "ca", ("gw-tls-0001", "linli-audit"))
    names = [f"gw-f{i:04d}" for i in range(FLEET)] + ["linli-audit"]
    passwd = workdir / "passwd"
    passwd.write_text("".join(f"{name}:{PASSWORD}\n" for name in names))
    sh("mosquitto_passwd", "-U", passwd)
    password_port = free_port()
    broker = TlsBroker(workdir / "broker", pki, extra_conf=(
        f"listener {password_port} 127.0.0.1\nprotocol mqtt\npassword_file {passwd}\n"), extra_ports=[password_port])
    broker.password_port = password_port
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def fleet(fleet_broker):
    """``FLEET`` gateways logged in on the password listener, each with its grid path; closed after the test."""
    run = uuid.uuid4().hex[:6]
    made: list[Client] = []
    gateways = []
    for i in range(FLEET):
        client = Client(fleet_broker, f"gw-f{i:04d}", password=PASSWORD, port=fleet_broker.password_port)
        made.append(client)
        gateways.append((f"gw-f{i:04d}", fleet_grid(i, run), client))

    def connect(name: str, **kw) -> Client:
        client = Client(fleet_broker, name, **kw)
        made.append(client)
        return client

    yield gateways, connect
    for client in made:
        client.close()


def test_the_fleet_spans_every_depth_and_its_listener_needs_the_password(fleet_broker, fleet):
    gateways, _ = fleet
    assert {len(grid.split("/")) for _, grid, _ in gateways} == set(range(1, 7))
    with pytest.raises(ConnectRefused):
        Client(fleet_broker, "gw-f0001", password="wrong", port=fleet_broker.password_port)


def test_no_gateway_writes_under_another(fleet):
    gateways, connect = fleet
    audit = connect("linli-audit")                      # over TLS, with its certificate: reads everything
    audit.subscribe("linli/#")
    street = gateways[0][1].split("/")[0]
    for k, (name, grid, client) in enumerate(gateways):
        for other, other_grid, _ in gateways:
            if other != name:
                assert client.publish(f"{base(other_grid, other)}/telemetry", b"forged") == "Not authorized"
        # Every topic of the next gateway (another depth), and the same under this gateway's own grid path.
        neighbour = gateways[(k + 1) % FLEET][0]
        for suffix in GATEWAY_TOPICS:
            assert client.publish(f"{base(gateways[(k + 1) % FLEET][1], neighbour)}/{suffix}") == "Not authorized"
            assert client.publish(f"{base(grid, neighbour)}/{suffix}") == "Not authorized"
        assert client.publish(f"{base(grid, name)}/telemetry", name.encode()) == "accepted"
    # One certificate gateway beside them, under the same rules.
    tls_gateway = connect("gw-tls-0001")
    assert tls_gateway.publish(f"{base(gateways[1][1], gateways[1][0])}/telemetry") == "Not authorized"
    assert tls_gateway.publish(f"{base(f'{street}/tls', 'gw-tls-0001')}/telemetry", b"gw-tls-0001") == "accepted"
    arrived = [audit.next_message() for _ in range(FLEET + 1)]
    assert arrived == [(f"{base(grid, name)}/telemetry", name.encode()) for name, grid, _ in gateways] + \
        [(f"{base(f'{street}/tls', 'gw-tls-0001')}/telemetry", b"gw-tls-0001")]


def test_every_gateway_reads_its_own_commands_only(fleet):
    """Each gateway subscribes to linli/#; two rounds of a command to every gateway sandwich any leak."""
    gateways, connect = fleet
    for _name, _grid, client in gateways:
        client.subscribe("linli/#")
    audit = connect("linli-audit")
    for round_ in ("first", "second"):
        for name, grid, _ in gateways:
            assert audit.publish(f"{base(grid, name)}/cmd/read-now", f"{round_} for {name}".encode()) == "accepted"
    for name, grid, client in gateways:
        received = [client.next_message() for _ in range(2)]
        assert received == [(f"{base(grid, name)}/cmd/read-now", f"{round_} for {name}".encode())
                            for round_ in ("first", "second")], name
    # A gateway cannot command another either.
    name, grid, _ = gateways[7]
    assert gateways[8][2].publish(f"{base(grid, name)}/cmd/read-now") == "Not authorized"
