"""The audit trail against a running ``linli run``: commands that change something arrive on ``<base>/event``.

A real mosquitto, the pump room's Modbus transmitter on a pseudo-terminal, the agent as a process.
Requests come over MQTT (the central side) and over the control socket (the local ``linli``); every
event message is validated against edge/schemas/event.schema.json by the subscriber.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edge.control import request
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, config_text
from tests.live_agent import PUMP_RULE, agent_process
from tests.test_config_remote import Operator


@pytest.fixture
def gateway(tmp_path, broker, subscriber_factory):
    """A running agent with the pump room's rule; yields (config path, control socket, subscriber, operator)."""
    config = tmp_path / "etc" / "edge.toml"
    config.parent.mkdir()
    with PressureTransmitterSim(unit_id=1, profile=0.35) as transmitter:
        config.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db", serial_port=transmitter.port,
                                      extra_sensors=PUMP_RULE))
        sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
        operator = Operator(broker, sub)
        try:
            with agent_process([sys.executable, "-m", "edge.cli", "--config", str(config), "run"], config,
                               cwd=Path(__file__).resolve().parent.parent):
                operator.warm_up()
                yield config, str(tmp_path / "control.sock"), sub, operator
        finally:
            operator.close()


def events(sub, request_id):
    return [m.payload for m in sub.messages("event") if m.payload["request_id"] == request_id]


def one_event(sub, request_id):
    """The one event of ``request_id``, once it arrived; a second one for the same request fails the test."""
    sub.wait_for(lambda _m: events(sub, request_id), 15, f"the event of {request_id}")
    found = events(sub, request_id)
    assert len(found) == 1, found
    return found[0]


def test_mqtt_and_local_changes_are_events_in_the_gateways_sequence(gateway):
    _config, socket, sub, operator = gateway
    away = operator.ask("away", "away-1", {"until": "2099-01-01T00:00"})
    assert away["ok"] is True, away
    acked = request(socket, "alarm_ack", {"alarm": "pump-pressure/low"})
    assert acked["ok"] is True, acked
    assert acked["id"].startswith("local-"), "the control socket names local requests itself"

    by_mqtt = one_event(sub, "away-1")
    assert (by_mqtt["event"], by_mqtt["via"], by_mqtt["outcome"]) == ("away", "mqtt", "applied")
    assert '"away":true' in by_mqtt["detail"]
    local = one_event(sub, acked["id"])
    assert (local["event"], local["via"], local["outcome"]) == ("alarm_ack", "local", "applied")
    assert local["seq"] > by_mqtt["seq"], "the away request was settled first"

    # Every seq up to the last event arrived (or a dropped record explains it): the events are in the sequence.
    expected = set(range(1, local["seq"] + 1)) - sub.explained_seqs()
    assert expected <= set(sub.wait_for_seqs(expected))
    # Requests that change nothing are not in the trail.
    assert {m.payload["event"] for m in sub.messages("event")} == {"away", "alarm_ack"}


def test_a_refused_config_set_is_an_event_saying_so(gateway):
    config, _socket, sub, operator = gateway
    broken = config.read_text().replace('interval = "200ms"', 'interval = "fast"')
    reply = operator.ask("config_set", "set-invalid", {"toml": broken})
    assert reply["ok"] is False
    event = one_event(sub, "set-invalid")
    assert (event["event"], event["via"], event["outcome"]) == ("config_set", "mqtt", "refused")
    assert event["detail"] == reply["error"]
    assert "sensor[0].interval" in event["detail"]


def test_an_event_delivered_before_a_reload_is_not_sent_again_after_it(gateway):
    """A reload's new uplink starts where the old one stopped: acknowledged rows wait for their delete."""
    config, _socket, sub, operator = gateway
    operator.ask("away", "away-before", {"until": "2099-01-01T00:00"})
    before = one_event(sub, "away-before")
    reply = operator.ask("config_set", "reload-1", {"toml": config.read_text()}, timeout=90)
    assert reply["ok"] is True, reply
    after = one_event(sub, "reload-1")      # same priority, higher seq: sent after any repeat of the first
    assert after["seq"] > before["seq"]
    assert [m.payload["seq"] for m in sub.messages("event")].count(before["seq"]) == 1
    telemetry = [r["seq"] for m in sub.messages("telemetry") for r in m.payload["records"]]
    assert len(telemetry) == len(set(telemetry)), "a reading acknowledged before the reload came again"
