"""deploy/: the scripts' lint, the unit file, the PKI scripts, and the broker config (TLS + ACL) on a real mosquitto.

The installer itself is run for real in tests/test_install.py.

The broker tests start mosquitto with a configuration derived from
``deploy/mosquitto/`` (same file, only the paths, the port and the log moved into
tmp_path; tests/tls_broker.py) and certificates made by ``deploy/pki/``. To show that something was
*not* delivered without sleeping, a denied message is always followed by an
allowed one from the same client: mosquitto keeps one client's messages in
order, so once the allowed one arrived, the denied one would have been seen.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.tls_broker import DEPLOY, PKI_SCRIPTS, ROOT, Client, ConnectRefused, TlsBroker, base, make_pki, sh
from tests.unit_harness import UNIT, unit_settings

SHELL_SCRIPTS = [DEPLOY / "install.sh", *sorted(PKI_SCRIPTS.glob("*.sh"))]

GRID = "shimen2/xinfukangli/b07"
CLIENT_IDS = ("gw-0042", "gw-0043", "b07", "dashboard-street", "dashboard-xinfukangli", "operator", "linli-audit")


# --- scripts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script):
    sh("bash", "-n", script)


def test_scripts_are_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    sh("shellcheck", "-x", *SHELL_SCRIPTS, cwd=ROOT)


# --- systemd unit ---------------------------------------------------------------------------------------

def test_unit_key_settings():
    unit = unit_settings(UNIT)
    svc = unit["Service"]
    one = {key: values[-1] for key, values in svc.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    # ExecStart= and ExecReload= are not compared here: tests/test_systemd_unit.py runs them as written.
    assert one["WatchdogSec"] == "60"
    assert one["Restart"] == "always" and int(one["RestartSec"]) > 0
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]          # retry forever
    assert int(one["TimeoutStopSec"]) >= 30                          # room for the outbox flush
    assert one["User"] == "linli" and one["Group"] == "linli"
    assert set(one["SupplementaryGroups"].split()) == {"dialout", "gpio", "i2c"}
    assert one["StateDirectory"] == "linli" and one["ConfigurationDirectory"] == "linli"
    assert (one["ProtectSystem"], one["ProtectHome"], one["PrivateTmp"], one["NoNewPrivileges"]) == \
        ("strict", "yes", "yes", "yes")
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert one["DevicePolicy"] == "closed"
    allowed = {value.split()[0] for value in svc["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyAMA", "char-i2c", "char-gpiochip"} <= allowed
    # The clock asks adjtimex(2) whether time is synced: it must stay allowed, after the denials.
    assert svc["SystemCallFilter"][-1] == "adjtimex" and "ProtectClock" not in svc
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_agrees_with_the_config_defaults():
    from edge.config import DEFAULT_PATH, BufferConfig

    svc = unit_settings(UNIT)["Service"]
    assert svc["ExecStart"][0].endswith(f"--config {DEFAULT_PATH}")
    # ProtectSystem=strict: the outbox must live in the StateDirectory, the only writable place.
    assert BufferConfig().path.startswith(f"/var/lib/{svc['StateDirectory'][0]}/")


#: The updater's units beside the agent's: the path unit starts the service when the agent was asked to update.
UPDATER_UNITS = (UNIT.parent / "linli-update.path", UNIT.parent / "linli-update.service")
#: Where the installer puts the releases; the units run the command of the current one (or the previous one).
RELEASE_LINKS = ("/opt/linli/current/", "/opt/linli/previous/")


def _analyzable_unit(tmp_path: Path, text: str, name: str = "linli-edge.service") -> Path:
    # `systemd-analyze verify` insists that ExecStart's program exists; on a dev machine
    # /opt/linli/current/bin/linli does not, so only the release links point at a stand-in release.
    stand_in = tmp_path / "release"
    (stand_in / "bin").mkdir(parents=True, exist_ok=True)
    (stand_in / "bin/linli").write_text("#!/bin/sh\n")
    (stand_in / "bin/linli").chmod(0o755)
    unit = tmp_path / name
    for prefix in RELEASE_LINKS:
        text = text.replace(prefix, f"{stand_in}/")
    unit.write_text(text)
    return unit


def test_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed; test_unit_key_settings still checks the unit")
    assert "/opt/linli/current/bin/linli" in UNIT.read_text()
    good = sh("systemd-analyze", "verify", _analyzable_unit(tmp_path, UNIT.read_text()), check=False)
    assert good.returncode == 0 and "linli-edge.service" not in good.stderr, good.stderr
    # The check can fail: a misspelt key is reported.
    (tmp_path / "bad").mkdir()
    bad = _analyzable_unit(tmp_path / "bad", UNIT.read_text().replace("UMask=", "UMaks="))
    assert "Unknown key" in sh("systemd-analyze", "verify", bad, check=False).stderr


def test_updater_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed; test_updater_units_follow_the_contract still checks them")
    # The path unit names the service: both in one directory, verified together.
    units = [_analyzable_unit(tmp_path, path.read_text(), path.name) for path in UPDATER_UNITS]
    good = sh("systemd-analyze", "verify", *units, check=False)
    assert good.returncode == 0 and "linli-update" not in good.stderr, good.stderr
    (tmp_path / "bad").mkdir()
    bad = [_analyzable_unit(tmp_path / "bad", path.read_text().replace("PathExists=", "PathExist="), path.name)
           for path in UPDATER_UNITS]
    assert "Unknown key" in sh("systemd-analyze", "verify", *bad, check=False).stderr


def test_updater_units_follow_the_contract():
    """The path unit watches the agent's state directory; the service runs current's updater, then previous's."""
    from edge.config import DEFAULT_PATH

    path_unit, service = (unit_settings(path) for path in UPDATER_UNITS)
    state_directory = unit_settings(UNIT)["Service"]["StateDirectory"][0]
    assert path_unit["Path"] == {"PathExists": [f"/var/lib/{state_directory}/update/request.json"],
                                 "Unit": ["linli-update.service"]}
    assert path_unit["Install"]["WantedBy"] == ["paths.target"]
    svc = service["Service"]
    assert svc["Type"] == ["oneshot"] and "User" not in svc          # root: it writes /opt/linli
    assert svc["ExecStart"] == [f"-{prefix}bin/linli update --requested" for prefix in RELEASE_LINKS]
    assert service["Install"]["WantedBy"] == ["multi-user.target"]    # an update cut short is judged at boot
    agent = unit_settings(UNIT)["Service"]["ExecStart"][0]
    assert agent == f"{RELEASE_LINKS[0]}bin/linli run --config {DEFAULT_PATH}"


def test_every_setting_of_the_updater_units_is_explained():
    """systemd/README.md's updater section names each setting with its value, as the agent's sections do."""
    readme = (UNIT.parent / "README.md").read_text()
    section = readme[readme.index("## The updater"):]
    for path in UPDATER_UNITS:
        for name, settings in unit_settings(path).items():
            for key, values in settings.items():
                if key == "Description":
                    continue
                for value in values:
                    assert f"`{key}={value}`" in section, f"{path.name} [{name}] {key}={value}"
    assert "no `User=`" in section and "User" not in unit_settings(UPDATER_UNITS[1])["Service"]


def test_unit_sandbox_exposure_stays_low(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = sh("systemd-analyze", "security", "--offline=true", "--no-pager",
                _analyzable_unit(tmp_path, UNIT.read_text()), check=False)
    match = re.search(r"Overall exposure level for linli-edge\.service: ([0-9.]+)", result.stdout)
    if match is None and "--offline" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline security review (needs systemd 250+)")
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.5          # 1.9 as shipped; 9.6 with no sandbox at all


# --- PKI ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def community_pki(tmp_path_factory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki") / "ca", CLIENT_IDS)


def test_gateway_certificate_common_name_is_the_gateway_id(community_pki):
    ca, cert = community_pki / "ca.crt", community_pki / "gateways" / "gw-0042.crt"
    assert sh("openssl", "x509", "-in", cert, "-noout", "-subject").stdout.strip() == "subject=CN = gw-0042"
    assert sh("openssl", "x509", "-in", cert, "-noout", "-issuer").stdout.strip() == "issuer=CN = linli community CA"
    assert sh("openssl", "verify", "-CAfile", ca, "-purpose", "sslclient", cert).returncode == 0
    # clientAuth only: a stolen gateway certificate cannot pose as the broker
    assert sh("openssl", "verify", "-CAfile", ca, "-purpose", "sslserver", cert, check=False).returncode != 0


def test_server_certificate_names_the_broker(community_pki):
    ca, cert = community_pki / "ca.crt", community_pki / "servers" / "127.0.0.1.crt"
    san = sh("openssl", "x509", "-in", cert, "-noout", "-ext", "subjectAltName").stdout
    assert "IP Address:127.0.0.1" in san and "DNS:localhost" in san
    assert sh("openssl", "verify", "-CAfile", ca, "-purpose", "sslserver", cert).returncode == 0


def test_private_keys_are_private(community_pki):
    assert (community_pki / "private").stat().st_mode & 0o777 == 0o700
    for key in ("private/ca.key", "gateways/gw-0042.key", "servers/127.0.0.1.key"):
        assert (community_pki / key).stat().st_mode & 0o777 == 0o600, key


def test_pki_scripts_are_idempotent(community_pki):
    files = [community_pki / name for name in ("ca.crt", "private/ca.key", "gateways/gw-0042.crt",
                                               "gateways/gw-0042.key")]
    before = [f.read_bytes() for f in files]
    assert "left unchanged" in sh(PKI_SCRIPTS / "make-ca.sh", "--pki", community_pki).stdout
    assert "left unchanged" in sh(PKI_SCRIPTS / "make-gateway-cert.sh", "--pki", community_pki, "gw-0042").stdout
    assert [f.read_bytes() for f in files] == before


@pytest.mark.parametrize("name, message", [
    ("alarm", "reserved topic word"),
    ("cmd", "reserved topic word"),
    ("GW-0042", "a-z, 0-9 and -"),
    ("gw/0042", "a-z, 0-9 and -"),
    ("gw+", "a-z, 0-9 and -"),
    ("", "usage: make-gateway-cert.sh"),
])
def test_gateway_ids_that_would_break_the_acl_are_refused(community_pki, name, message):
    result = sh(PKI_SCRIPTS / "make-gateway-cert.sh", "--pki", community_pki, name, check=False)
    assert result.returncode == 1 and message in result.stderr
    assert not list((community_pki / "gateways").glob(f"{name or 'nothing'}.*"))


def test_gateway_certificate_needs_a_ca(tmp_path):
    result = sh(PKI_SCRIPTS / "make-gateway-cert.sh", "--pki", tmp_path / "none", "gw-1", check=False)
    assert result.returncode == 1 and "run make-ca.sh" in result.stderr


# --- a real mosquitto with the deploy/mosquitto configuration ----------------------------------------------
@pytest.fixture(scope="module")
def tls_broker(community_pki, tmp_path_factory):
    broker = TlsBroker(tmp_path_factory.mktemp("broker"), community_pki)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def clients(tls_broker):
    made: list[Client] = []

    def connect(name: str, **kw) -> Client:
        client = Client(tls_broker, name, **kw)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def unique_grid() -> str:
    """A grid path of this test's own, so tests sharing the broker never see each other's messages."""
    return f"s{uuid.uuid4().hex[:8]}/xinfukangli/b07"


def test_gateway_publishes_under_its_own_id_and_nowhere_else(clients):
    grid = unique_grid()
    dashboard = clients("dashboard-street")
    dashboard.subscribe("linli/#")
    gateway = clients("gw-0042")
    assert gateway.publish(f"{base(grid, 'gw-0043')}/telemetry", b"forged") == "Not authorized"
    assert gateway.publish(f"{base(grid, 'gw-0042')}/telemetry", b"real") == "accepted"
    assert dashboard.next_message() == (f"{base(grid, 'gw-0042')}/telemetry", b"real")


@pytest.mark.parametrize("depth", range(1, 7))
def test_every_gateway_topic_is_writable_at_every_grid_depth(clients, depth):
    grid = "/".join(f"d{i}x{uuid.uuid4().hex[:6]}" for i in range(depth))
    dashboard = clients("dashboard-street")
    dashboard.subscribe("linli/#")
    gateway = clients("gw-0042")
    own = base(grid, "gw-0042")
    topics = [f"{own}/{suffix}" for suffix in
              ("status", "telemetry", "alarm", "alarm/pump-pressure/low", "health", "cmd/read-now/reply")]
    for topic in topics:
        assert gateway.publish(topic) == "accepted", topic
    for topic in topics:
        assert dashboard.next_message()[0] == topic
    # Only the documented topics: no free-form subtree under the gateway's id.
    assert gateway.publish(f"{own}/debug") == "Not authorized"
    assert gateway.publish(f"{own}/alarm/a/b/c") == "Not authorized"
    assert gateway.publish(f"{own}/cmd/read-now") == "Not authorized"   # commands come from the operator


def test_seven_level_grid_paths_are_not_covered(clients):
    grid = "/".join(f"l{i}" for i in range(7))
    assert clients("gw-0042").publish(f"{base(grid, 'gw-0042')}/telemetry") == "Not authorized"


def test_gateway_named_like_a_grid_level_cannot_reach_into_another_gateway(clients):
    # With "pattern write linli/+/+/%u/#" the gateway "b07" could write here; exact suffixes prevent it.
    intruder = clients("b07")
    assert intruder.publish(f"linli/{GRID}/gw-0042/alarm") == "Not authorized"
    assert intruder.publish(f"linli/{GRID}/gw-0042/alarm/bed-3/out-of-bed") == "Not authorized"
    assert intruder.publish(f"linli/{GRID}/gw-0042/telemetry") == "Not authorized"
    assert intruder.publish(f"linli/{GRID}/b07/health") == "accepted"    # its own topics still work


def test_mqtt311_denied_publish_is_acknowledged_and_dropped(clients):
    # Why the ACL must cover every grid depth: MQTT 3.1.1 has no way to say "not authorised".
    grid = unique_grid()
    dashboard = clients("dashboard-street")
    dashboard.subscribe("linli/#")
    gateway = clients("gw-0043", protocol=mqtt.MQTTv311)
    assert gateway.publish(f"{base(grid, 'gw-0042')}/telemetry", b"forged") == "accepted"
    assert gateway.publish(f"{base(grid, 'gw-0043')}/telemetry", b"real") == "accepted"
    assert dashboard.next_message() == (f"{base(grid, 'gw-0043')}/telemetry", b"real")


def test_district_dashboard_reads_only_its_district(clients):
    dashboard = clients("dashboard-xinfukangli")
    dashboard.subscribe("linli/#")
    gateway = clients("gw-0042")
    assert gateway.publish(f"{base('shimen2/other-district/b01', 'gw-0042')}/alarm", b"elsewhere") == "accepted"
    assert gateway.publish(f"{base('shimen2/xinfukangli/b07', 'gw-0042')}/alarm", b"here") == "accepted"
    assert dashboard.next_message() == (f"{base('shimen2/xinfukangli/b07', 'gw-0042')}/alarm", b"here")
    assert dashboard.publish(f"{base('shimen2/xinfukangli/b07', 'gw-0042')}/alarm") == "Not authorized"


def test_commands_reach_only_their_gateway_and_only_the_operator_sends_them(clients):
    grid = unique_grid()
    target, bystander = clients("gw-0042"), clients("gw-0043")
    target.subscribe(f"{base(grid, 'gw-0042')}/cmd/+")
    bystander.subscribe("linli/#")                           # granted, but reads only its own commands
    operator = clients("operator")
    assert operator.publish(f"{base(grid, 'gw-0042')}/cmd/read-now", b"for 0042") == "accepted"
    assert operator.publish(f"{base(grid, 'gw-0043')}/cmd/diag", b"for 0043") == "accepted"
    assert target.next_message() == (f"{base(grid, 'gw-0042')}/cmd/read-now", b"for 0042")
    assert bystander.next_message() == (f"{base(grid, 'gw-0043')}/cmd/diag", b"for 0043")
    assert target.publish(f"{base(grid, 'gw-0042')}/cmd/read-now/reply") == "accepted"
    assert operator.publish(f"{base(grid, 'gw-0042')}/telemetry") == "Not authorized"
    assert clients("gw-0043").publish(f"{base(grid, 'gw-0042')}/cmd/read-now") == "Not authorized"


#: What a gateway publishes, relative to its base topic: the audit identity may publish none of it.
GATEWAY_TOPICS = ("status", "telemetry", "alarm", "alarm/pump-pressure/low", "event", "health", "cmd/read-now/reply")


def test_audit_reads_everything_including_retained_states(clients):
    """linli audit arrives after the fact: the retained status and alarm states of every depth reach it."""
    grids = [f"a{uuid.uuid4().hex[:8]}", f"a{uuid.uuid4().hex[:8]}/xinfukangli/b07/u2/f3/r4"]   # depths 1 and 6
    gateway = clients("gw-0042")
    retained = [(f"{base(grid, 'gw-0042')}/{suffix}", f"{suffix} at {grid}".encode())
                for grid in grids for suffix in ("status", "alarm/pump-pressure/low")]
    for topic, payload in retained:
        assert gateway.publish(topic, payload, retain=True) == "accepted"
    audit = clients("linli-audit")
    for grid in grids:
        audit.subscribe(f"linli/{grid}/#")
    assert sorted(audit.next_message() for _ in retained) == sorted(retained)
    assert gateway.publish(f"{base(grids[1], 'gw-0042')}/telemetry", b"live") == "accepted"
    assert audit.next_message() == (f"{base(grids[1], 'gw-0042')}/telemetry", b"live")


@pytest.mark.parametrize("depth", range(1, 7))
def test_audit_writes_commands_and_nothing_else_at_every_depth(clients, depth):
    grid = "/".join(f"d{i}x{uuid.uuid4().hex[:6]}" for i in range(depth))
    audit = clients("linli-audit")
    for suffix in GATEWAY_TOPICS:
        assert audit.publish(f"{base(grid, 'gw-0042')}/{suffix}") == "Not authorized", suffix
    assert audit.publish(f"{base(grid, 'gw-0042')}/cmd/read-now/extra") == "Not authorized"
    target = clients("gw-0042")
    target.subscribe(f"{base(grid, 'gw-0042')}/cmd/+")
    assert audit.publish(f"{base(grid, 'gw-0042')}/cmd/read-now", b"from the audit") == "accepted"
    assert target.next_message() == (f"{base(grid, 'gw-0042')}/cmd/read-now", b"from the audit")


def test_audit_forgeries_under_mqtt311_are_dropped(clients):
    """Acknowledged (3.1.1 cannot say no) but never delivered: a reader of everything sees only the command.

    It reads this test's own grid: the broker is shared with the module's other tests, whose retained
    messages a subscription to all of ``linli/#`` would get first."""
    grid = unique_grid()
    dashboard = clients("dashboard-street")
    dashboard.subscribe(f"linli/{grid}/#")
    audit = clients("linli-audit", protocol=mqtt.MQTTv311)
    for suffix in GATEWAY_TOPICS:
        assert audit.publish(f"{base(grid, 'gw-0042')}/{suffix}", b"forged") == "accepted"
    assert audit.publish(f"{base(grid, 'gw-0042')}/cmd/diag", b"real") == "accepted"
    assert dashboard.next_message() == (f"{base(grid, 'gw-0042')}/cmd/diag", b"real")


def test_clients_without_a_community_certificate_are_refused(tls_broker, tmp_path):
    with pytest.raises(ConnectRefused):
        Client(tls_broker, "gw-0042", with_cert=False)
    stranger = make_pki(tmp_path / "other-ca", client_ids=("gw-0042",))
    with pytest.raises(ConnectRefused):
        Client(tls_broker, "gw-0042", pki=stranger)


def test_revoked_certificate_is_refused_after_a_reload(tmp_path):
    pki = make_pki(tmp_path / "ca", client_ids=("gw-0042", "gw-0043"))
    broker = TlsBroker(tmp_path / "broker", pki)
    broker.start()
    try:
        Client(broker, "gw-0043").close()
        kept = {suffix: (pki / "gateways" / f"gw-0043.{suffix}").read_bytes() for suffix in ("crt", "key")}
        out = sh(PKI_SCRIPTS / "revoke-cert.sh", "--pki", pki, "gw-0043").stdout
        assert "revoked gw-0043" in out
        assert not (pki / "gateways" / "gw-0043.crt").exists()          # a new one may now be issued
        assert len(list((pki / "gateways").glob("gw-0043.crt.revoked-*"))) == 1
        # The thief still holds the old files; the broker gets the new CRL and a SIGHUP.
        thief = tmp_path / "thief"
        (thief / "gateways").mkdir(parents=True)
        for suffix, data in kept.items():
            (thief / "gateways" / f"gw-0043.{suffix}").write_bytes(data)
        shutil.copy(pki / "crl.pem", broker.workdir / "crl.pem")
        broker.reload()
        with pytest.raises(ConnectRefused):
            Client(broker, "gw-0043", pki=thief)
        Client(broker, "gw-0042").close()                                 # everyone else unaffected
        sh(PKI_SCRIPTS / "make-gateway-cert.sh", "--pki", pki, "gw-0043")  # the replacement gateway
        Client(broker, "gw-0043").close()
    finally:
        broker.stop()


def test_the_agent_uplink_delivers_through_this_broker(tls_broker, community_pki, tmp_path):
    """The real uplink, configured as edge.toml.example says (TLS, client certificate, MQTT 5), with this
    package's clock and health facts: every topic it uses passes the ACL and every record is acknowledged."""
    from buffer.outbox import Priority
    from edge.clock import Clock
    from edge.config import Config, GatewayConfig, MqttConfig
    from edge.health import gather
    from edge.uplink import Uplink
    from tests.mqtt_helpers import OutboxWriter, Subscriber, alarm, reading, wait_until

    grid = unique_grid()
    gw = community_pki / "gateways"
    tls = {"ca_file": str(community_pki / "ca.crt")}
    config = Config(GatewayConfig(id="gw-0042", grid=grid), MqttConfig(
        host="127.0.0.1", port=tls_broker.port, protocol="5", tls=True, cert_file=str(gw / "gw-0042.crt"),
        key_file=str(gw / "gw-0042.key"), reconnect_min=0.05, reconnect_max=0.3, keepalive=5.0,
        health_interval=0.2, **tls))
    dashboard = Subscriber("127.0.0.1", tls_broker.port, f"linli/{grid}/gw-0042/#", protocol="5",
                           tls={**tls, "cert_file": str(gw / "dashboard-street.crt"),
                                "key_file": str(gw / "dashboard-street.key")})
    writer = OutboxWriter(tmp_path / "outbox.db")
    clock, started = Clock(), time.monotonic()
    uplink = Uplink(config, writer.outbox, writer.on_acked, version="0.1.0", boot_id=clock.boot_id,
                    correct=clock.correct,
                    health=lambda: gather(writer.outbox.stats(), clock, started, {},
                                          outbox_path=tmp_path / "outbox.db"))
    try:
        seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(200)]
                          + [(alarm("pump-pressure", "low"), Priority.ALARM)])
        uplink.start()
        dashboard.wait_for_seqs(seqs)
        wait_until(lambda: sorted(writer.acked) == seqs, 10, "every seq acknowledged")
        messages = dashboard.wait_for(lambda ms: {"status", "health", "alarm_state"} <= {m.kind for m in ms},
                                      what="status, health and the retained alarm state")
        health_body = next(m.payload for m in messages if m.kind == "health")
        assert health_body["rss_kb"] > 0 and health_body["disk_free_bytes"] > 0
        assert uplink.status()["last_error"] is None
    finally:
        uplink.stop(2)
        writer.close()
        dashboard.close()
    assert uplink.error is None
