"""Remote configuration against a running ``linli run``, through MQTT only: config_get, config_set, diag.

A real mosquitto, a Modbus pressure transmitter on a pseudo-terminal, the agent as a process.
The managed copy lands in the state folder beside the outbox (no ``$STATE_DIRECTORY`` here).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.test_cli_json import check

from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, GATEWAY, SECOND_SENSOR, config_text, linli
from tests.live_agent import agent_process



@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


class Operator:
    """The central side: publishes requests on cmd/<name> and reads the replies a subscriber saw."""

    #: The agent asked: the test gateway of tests/agent_helpers.py unless told otherwise.
    base, gateway = BASE, GATEWAY

    def __init__(self, broker, sub, *, base=BASE, gateway=GATEWAY):
        self.sub = sub
        self.base, self.gateway = base, gateway
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="test-operator")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()

    def send(self, name, request_id, args=None):
        body = {"v": 1, "gateway": self.gateway, "id": request_id, "name": name, "args": args or {}}
        self.client.publish(f"{self.base}/cmd/{name}", json.dumps(body), qos=1).wait_for_publish(5)

    def replies(self, request_id):
        return [m.payload for m in self.sub.messages("command_reply") if m.payload["id"] == request_id]

    def ask(self, name, request_id, args=None, timeout=20.0, count=1):
        self.send(name, request_id, args)
        self.sub.wait_for(lambda _m: len(self.replies(request_id)) >= count, timeout, f"the reply to {request_id}")
        return self.replies(request_id)[-1]

    def warm_up(self):
        """The agent subscribes to cmd/+ just after its birth message: ping until the subscription is live."""
        self.warm_ups = getattr(self, "warm_ups", 0) + 1
        for attempt in range(40):
            request_id = f"warm-up-{self.warm_ups}-{attempt}"
            self.send("ping", request_id)
            try:
                self.sub.wait_for(lambda _m, rid=request_id: self.replies(rid), 0.5, "a warm-up reply")
                return
            except AssertionError:
                continue
        raise AssertionError("the agent never answered a ping")


def readings(sub, sensor, quality="good"):
    return [r for m in sub.messages("telemetry") for r in m.payload["records"]
            if r.get("kind", "reading") == "reading" and r["sensor"] == sensor and r["quality"] == quality]


def events(sub, request_id):
    """The audit trail's events of one request (edge/events.py)."""
    return [m.payload for m in sub.messages("event") if m.payload["request_id"] == request_id]


def more_readings(sub, sensor, timeout=15.0):
    """Wait until ``sensor`` sends three more good readings than it had: it is still being read."""
    count = len(readings(sub, sensor))
    sub.wait_for(lambda _m: len(readings(sub, sensor)) >= count + 3, timeout, f"more good readings of {sensor}")


@pytest.fixture
def gateway(tmp_path, broker, transmitter, subscriber_factory):
    """Start an agent on a fresh config; yields (config path, subscriber, operator, start) to restart it too."""
    config = tmp_path / "etc" / "edge.toml"
    config.parent.mkdir()
    config.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db", serial_port=transmitter.port))
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    operator = Operator(broker, sub)

    def start():
        return agent_process([sys.executable, "-m", "edge.cli", "--config", str(config), "run"], config,
                             cwd=Path(__file__).resolve().parent.parent)

    try:
        yield config, sub, operator, start
    finally:
        operator.close()


def test_config_get_returns_the_running_file_and_a_stale_base_is_refused(gateway):
    config, sub, operator, start = gateway
    with start():
        operator.warm_up()
        got = operator.ask("config_get", "get-1")
        assert got["ok"] is True
        assert got["result"]["toml"] == config.read_text()
        assert got["result"]["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()

        changed = config.read_text() + SECOND_SENSOR
        refused = operator.ask("config_set", "set-stale", {"toml": changed, "base_sha256": "0" * 64})
        assert refused["ok"] is False and "refused" in refused["error"] and got["result"]["sha256"] in refused["error"]
        assert operator.ask("config_get", "get-2")["result"]["sha256"] == got["result"]["sha256"]
        assert not (config.parent.parent / "config" / "edge.toml").exists()

        diag = operator.ask("diag", "diag-1")
        assert diag["ok"] is True
        assert {check["status"] for check in diag["result"]["checks"]} <= {"pass", "warn", "fail"}
        assert any(check["check"] for check in diag["result"]["checks"])


def test_an_invalid_file_is_refused_naming_its_key_path_while_telemetry_goes_on(gateway):
    config, sub, operator, start = gateway
    with start():
        operator.warm_up()
        broken = config.read_text().replace('interval = "200ms"', 'interval = "fast"').replace(
            'timeout = "300ms"', 'timeout = -1')
        reply = operator.ask("config_set", "set-invalid", {"toml": broken})
        assert reply["ok"] is False
        assert "nothing changed" in reply["error"]
        assert 'sensor[0].interval: expected a duration like "30s" or "5m", got "fast"' in reply["error"]
        assert "bus[0].timeout" in reply["error"]
        more_readings(sub, "pump-pressure")
        assert operator.ask("config_get", "get-after")["result"]["toml"] == config.read_text()


def test_a_new_adapter_that_does_not_exist_is_rolled_back_and_the_old_sensors_keep_reporting(gateway, transmitter):
    config, sub, operator, start = gateway
    with start():
        operator.warm_up()
        before = operator.ask("config_get", "get-before")["result"]
        missing = str(config.parent / "ttyUSB-unplugged")
        moved = before["toml"].replace(transmitter.port, missing)
        reply = operator.ask("config_set", "set-missing", {"toml": moved, "deadline_s": 5}, timeout=40)
        assert reply["ok"] is False
        assert "rolled back" in reply["error"]
        assert "sensor pump-pressure" in reply["error"] and missing in reply["error"]
        sub.wait_for(lambda _m: events(sub, "set-missing"), 10, "the rollback's event")
        assert [(e["via"], e["outcome"]) for e in events(sub, "set-missing")] == [("mqtt", "rolled_back")]
        assert operator.ask("config_get", "get-after")["result"]["sha256"] == before["sha256"]
        more_readings(sub, "pump-pressure")
        managed = config.parent.parent / "config"
        assert not (managed / "edge.toml").exists()
        assert (managed / "edge.toml.rejected").read_text() == moved


def test_a_good_change_is_applied_once_per_id_and_still_runs_after_a_restart(gateway):
    config, sub, operator, start = gateway
    with start():
        operator.warm_up()
        before = operator.ask("config_get", "get-before")["result"]
        changed = before["toml"] + SECOND_SENSOR
        request = {"toml": changed, "base_sha256": before["sha256"], "deadline_s": 30}
        reply = operator.ask("config_set", "set-good", request, timeout=40)
        assert reply["ok"] is True, reply
        assert reply["result"] == {"applied": True, "sha256": hashlib.sha256(changed.encode()).hexdigest(),
                                   "previous_sha256": before["sha256"]}
        more_readings(sub, "pump-pressure-2")
        sub.wait_for(lambda _m: events(sub, "set-good"), 10, "the change's event")
        assert [e["outcome"] for e in events(sub, "set-good")] == ["applied"]
        # Run again, the stale base would refuse it: the same reply again shows it was not run twice.
        again = operator.ask("config_set", "set-good", request, timeout=40, count=2)
        assert again == reply
        assert len(events(sub, "set-good")) == 1, "a repeated id is neither run nor audited again"
        assert len(readings(sub, "pump-pressure")) > 0
    assert config.read_text() != changed, "the installed file stays as installed"
    with start():
        operator.warm_up()
        seen = len(readings(sub, "pump-pressure-2"))
        assert operator.ask("config_get", "get-restarted")["result"]["toml"] == changed
        sub.wait_for(lambda _m: len(readings(sub, "pump-pressure-2")) > seen, 15, "the added sensor after a restart")


def test_linli_config_apply_runs_the_same_flow_over_the_control_socket(gateway, transmitter, tmp_path):
    config, sub, operator, start = gateway
    with start():
        operator.warm_up()
        slower = tmp_path / "slower.toml"
        slower.write_text(config.read_text().replace('interval = "200ms"', 'interval = "250ms"'))
        applied = linli("--config", str(config), "config", "apply", "--json", str(slower),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = applied.communicate(timeout=90)
        assert applied.returncode == 0, err
        assert json.loads(out)["sha256"] == hashlib.sha256(slower.read_bytes()).hexdigest()
        check("config_apply", json.loads(out))
        assert operator.ask("config_get", "get-applied")["result"]["toml"] == slower.read_text()
        sub.wait_for(lambda _m: sub.messages("event"), 10, "the local change's event")
        assert [(m.payload["event"], m.payload["via"], m.payload["outcome"]) for m in sub.messages("event")] == \
            [("config_set", "local", "applied")]

        unplugged = tmp_path / "unplugged.toml"
        unplugged.write_text(slower.read_text().replace(transmitter.port, str(tmp_path / "ttyUSB9")))
        refused = linli("--config", str(config), "config", "apply", "--deadline", "3", str(unplugged),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = refused.communicate(timeout=90)
        assert refused.returncode == 1
        assert "rolled back" in err and "ttyUSB9" in err and "Traceback" not in err
        assert operator.ask("config_get", "get-kept")["result"]["toml"] == slower.read_text()
        more_readings(sub, "pump-pressure")
