"""Remote configuration under the unit's real sandbox: config_get and config_set through MQTT only.

tests/test_config_remote.py proves the flow against an agent started by hand; here the agent is
systemd/linli-edge.service, unchanged, in the systemd container of tests/test_systemd_container.py
(one boot for every step). What the sandbox changes is where the agent may write:
``ProtectSystem=strict`` keeps ``/etc/linli/edge.toml`` read-only, so a pushed configuration has to
land in the unit's ``StateDirectory`` (decision 0009), survive ``systemctl restart`` and be rolled
back when the adapter it names is not plugged in. Skipped, with the reason, where the container
test is (no root, no systemd-nspawn, a checkout the sandbox hides).
"""

from __future__ import annotations

import hashlib

from tests import test_systemd_container
from tests.test_config_remote import Operator, events, more_readings
from tests.test_systemd_unit import BASE

#: The container test's fixture, used here as is: the unit installed and the container booted, not started.
container = test_systemd_container.container

GATEWAY = "gw-unit"
INSTALLED = "/etc/linli/edge.toml"
MANAGED = "/var/lib/linli/config/edge.toml"
FIRST, SECOND = "flat-302-water", "flat-303-water"

#: Another flat's water meter on the gateway's mock GPIO pins.
SECOND_METER = f"""
[[sensor]]
id = "{SECOND}"
driver = "pulse_meter"
bus = "gpio"
pin = 27
litres_per_pulse = 1.0
interval = "200ms"
"""

#: A pump room's transmitter on a USB-RS485 adapter that is not plugged in.
UNPLUGGED_ADAPTER = """
[[bus]]
name = "rs485-1"
kind = "serial"
port = "/dev/ttyUSB9"
timeout = "300ms"

[[sensor]]
id = "pump-pressure"
driver = "modbus_pressure"
bus = "rs485-1"
address = 1
interval = "200ms"
"""


def shell(container, line: str) -> str:
    """``line`` run as root in the container; its output, the test failing (with the journal) if it fails."""
    result = container.run(line)
    assert result.returncode == 0, f"{line}: {result.stdout}{result.stderr}\n" + \
        container.run("journalctl -u linli-edge -b --no-pager").stdout
    return result.stdout


def test_config_get_and_set_through_mqtt_under_the_units_sandbox(container, broker, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    operator = Operator(broker, sub, base=BASE, gateway=GATEWAY)
    try:
        shell(container, "systemctl start linli-edge")
        operator.warm_up()
        installed = shell(container, f"cat {INSTALLED}")

        # 1. config_get: the installed file, as the sandboxed agent reads it.
        got = operator.ask("config_get", "get-installed")
        assert got["ok"] is True, got
        assert got["result"] == {"toml": installed, "sha256": hashlib.sha256(installed.encode()).hexdigest()}

        # 2. An invalid file is refused, naming the key path; nothing stops reading.
        broken = installed.replace('interval = "200ms"', 'interval = "fast"')
        refused = operator.ask("config_set", "set-invalid", {"toml": broken})
        assert refused["ok"] is False and "nothing changed" in refused["error"], refused
        assert 'sensor[0].interval: expected a duration like "30s" or "5m", got "fast"' in refused["error"]
        more_readings(sub, FIRST)

        # 3. A second meter: applied, written under the state directory (never /etc), kept across a restart.
        changed = installed + SECOND_METER
        request = {"toml": changed, "base_sha256": got["result"]["sha256"], "deadline_s": 30}
        applied = operator.ask("config_set", "set-second-meter", request, timeout=40)
        assert applied["ok"] is True, applied
        assert applied["result"]["sha256"] == hashlib.sha256(changed.encode()).hexdigest()
        more_readings(sub, SECOND)
        assert shell(container, f"cat {MANAGED}") == changed
        assert shell(container, f"stat -c %U {MANAGED}").strip() == "linli", "written by the agent's account"
        assert shell(container, f"cat {INSTALLED}") == installed, "the installed file stays as installed"
        assert shell(container, "ls -A /etc/linli").split() == ["edge.toml"]

        pid = shell(container, "systemctl show linli-edge --property=MainPID --value").strip()
        shell(container, "systemctl restart linli-edge")
        assert shell(container, "systemctl show linli-edge --property=MainPID --value").strip() != pid
        operator.warm_up()
        assert operator.ask("config_get", "get-restarted")["result"]["toml"] == changed
        more_readings(sub, SECOND)

        # 4. A bus on an adapter that is not there: rolled back within the deadline, both meters go on.
        unplugged = changed + UNPLUGGED_ADAPTER
        rolled_back = operator.ask("config_set", "set-unplugged", {"toml": unplugged, "deadline_s": 5}, timeout=40)
        assert rolled_back["ok"] is False and "rolled back" in rolled_back["error"], rolled_back
        assert "/dev/ttyUSB9" in rolled_back["error"], rolled_back["error"]
        assert operator.ask("config_get", "get-kept")["result"]["toml"] == changed
        more_readings(sub, FIRST)
        more_readings(sub, SECOND)
        assert shell(container, f"cat {MANAGED}") == changed
        assert shell(container, f"cat {MANAGED}.rejected") == unplugged

        # 5. Each config_set is one event record on <base>/event (the subscriber checks it against its schema).
        # Delivery is at least once and the central side drops duplicates by seq, so one seq per request.
        outcomes = {"set-invalid": "refused", "set-second-meter": "applied", "set-unplugged": "rolled_back"}
        sub.wait_for(lambda _m: all(events(sub, rid) for rid in outcomes), 15, "an event for each config_set")
        trail = {rid: {e["seq"]: (e["event"], e["via"], e["outcome"]) for e in events(sub, rid)} for rid in outcomes}
        assert {rid: list(by_seq.values()) for rid, by_seq in trail.items()} == \
            {rid: [("config_set", "mqtt", outcome)] for rid, outcome in outcomes.items()}
    finally:
        operator.close()
