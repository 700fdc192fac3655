"""A 4-20 mA pressure loop on a simulated ADS1115, read by the real agent and seen at a real broker.

The loop current is walked through 4, 12 and 20 mA, then the wire breaks: the
pressure follows the span and then turns ``bad`` (``loop_fault``) — never a
bogus 0 or -0.4 MPa — and the loop-fault rule raises its alarm.
"""

from __future__ import annotations

import uuid

import pytest

from drivers.transports import i2c
from edge.agent import Agent
from edge.config import validate
from edge.simulate.i2c_chips import Ads1115, FakeSMBus, LoopTransmitter
from tests.agent_helpers import BASE, GATEWAY, GRID


@pytest.fixture
def loop():
    """A transmitter on AIN0 of an ADS1115 at 0x48, on a simulated bus registered under a unique name."""
    transmitter = LoopTransmitter(shunt_ohms=150.0, span=(0.0, 1.6), current_ma=4.0)
    name = f"loop-{uuid.uuid4().hex[:8]}"
    i2c.SIMULATED[name] = FakeSMBus(Ads1115(0x48, {0: transmitter}))
    yield name, transmitter
    del i2c.SIMULATED[name]


def config(tmp_path, port: int, simulator: str):
    return validate({
        "gateway": {"id": GATEWAY, "grid": GRID, "site": "test bench"},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min": "100ms", "reconnect_max": "500ms"},
        "buffer": {"path": str(tmp_path / "outbox.db"), "commit_interval": "100ms"},
        "control": {"socket": str(tmp_path / "control.sock")},
        "bus": [{"name": "i2c", "kind": "i2c", "simulator": simulator}],
        "sensor": [{"id": "pump-pressure", "driver": "ads1115_loop", "bus": "i2c", "interval": "200ms",
                    "address": 0x48, "channel": 0, "pga": 4.096, "data_rate": 860, "shunt_ohms": 150.0,
                    "span": [0.0, 1.6], "unit": "MPa"}],
        "rule": [{"id": "loop-fault", "sensor": "pump-pressure", "quantity": "loop_current", "kind": "threshold",
                  "below": 3.6, "for": "400ms", "severity": "critical"}],
    }, source="test")


def pressures(sub) -> list[dict]:
    return [r for m in sub.messages("telemetry") for r in m.payload["records"]
            if r.get("quantity") == "pressure"]


def test_loop_current_walked_through_4_12_20_ma_then_a_broken_wire(tmp_path, broker, loop, subscriber_factory):
    simulator, transmitter = loop
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    agent = Agent(config(tmp_path, broker.port, simulator))
    agent.start()
    try:
        for current, expected in ((4.0, 0.0), (12.0, 0.8), (20.0, 1.6)):
            transmitter.set_current(current)
            mark = len(pressures(sub))
            sub.wait_for(lambda _m, mark=mark, expected=expected: any(
                r["quality"] == "good" and abs(r["value"] - expected) < 0.002 for r in pressures(sub)[mark:]),
                10, f"a pressure of {expected} MPa at {current} mA")
        transmitter.break_wire()
        mark = len(pressures(sub))
        sub.wait_for(lambda _m: any(m.kind == "alarm" and m.payload["state"] == "raised" for m in _m), 10,
                     "the loop-fault alarm")
    finally:
        agent.stop(drain_timeout=5)
    broken = [r for r in pressures(sub)[mark:]]
    assert broken and all(r["value"] is None and r["quality"] == "bad" and r["reason"] == "loop_fault"
                          for r in broken)
    [alarm] = [m.payload for m in sub.messages("alarm")]
    assert (alarm["alarm"], alarm["state"], alarm["severity"]) == ("pump-pressure/loop-fault", "raised", "critical")
    currents = [r["value"] for m in sub.messages("telemetry") for r in m.payload["records"]
                if r.get("quantity") == "loop_current" and r["value"] is not None]
    assert min(currents) < 0.1 and max(currents) == pytest.approx(20.0, abs=0.01)
