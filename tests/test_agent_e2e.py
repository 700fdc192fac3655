"""The whole spine, end to end: simulated devices -> agent -> real mosquitto -> a subscriber counting seqs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from buffer.outbox import Outbox
from edge.agent import Agent
from edge.config import load_config
from edge.core import LEARNED_STATE
from edge.rule_calls import on_core
from edge.simulate.modbus_pressure import PressureTransmitterSim
from edge.simulate.pulse import PulseMeterSim
from tests.agent_helpers import BASE, SECOND_SENSOR, config_text, linli, low_pressure_rule
from tests.mqtt_helpers import wait_until
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


def readings(sub, sensor=None, quality=None):
    found = []
    for m in sub.messages("telemetry"):
        for r in m.payload["records"]:
            if r.get("kind", "reading") == "reading" and (sensor is None or r["sensor"] == sensor) \
                    and (quality is None or r["quality"] == quality):
                found.append(r)
    return found


def assert_no_gap(seqs, explained=frozenset()):
    """Every seq from 1 to the highest seen arrived or is explained by a dropped record (at least once)."""
    assert seqs, "no seq arrived"
    missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs) - set(explained))
    assert missing == [], f"seqs missing: {missing[:20]}"


def write_config(tmp_path, **kw):
    path = tmp_path / "edge.toml"
    path.write_text(config_text(outbox=tmp_path / "outbox.db", **kw))
    return path


def test_readings_flow_from_devices_to_the_broker_and_stop_cleanly(tmp_path, broker, transmitter,
                                                                    subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = load_config(write_config(tmp_path, port=broker.port, serial_port=transmitter.port, gpio=True))
    agent = Agent(config)
    agent.start()
    try:
        water = agent.workers["gpio"]
        assert water.bus_open.wait(10), water.bus_error
        with PulseMeterSim(water.bus.factory, 17, litres_per_pulse=1.0, flow_l_per_min=600.0) as pulses:
            assert pulses.wait_for_pulses(20, timeout=10)
            sub.wait_for(lambda _m: any(r["value"] >= 0.015 for r in readings(sub, "flat-302-water")), 15,
                         "a water volume of at least 15 litres")
        sub.wait_for(lambda _m: len(readings(sub, "pump-pressure")) >= 5, 15, "five pressure readings")
    finally:
        agent.stop(drain_timeout=5)
    pressures = readings(sub, "pump-pressure")
    assert all(r["quality"] == "good" and r["unit"] == "MPa" for r in pressures)
    assert all(abs(r["value"] - 0.35) < 0.002 for r in pressures)
    assert all({"ts", "synced", "boot", "mono"} <= r.keys() for r in pressures)
    volumes = [r["value"] for r in readings(sub, "flat-302-water")]
    assert volumes == sorted(volumes), "a pulse total must never go down"
    status = sub.wait_for(lambda m: any(x.kind == "status" and x.payload["state"] == "offline" for x in m), 10,
                          "the offline status")
    assert [m.payload["state"] for m in status if m.kind == "status"][0] == "online"
    assert_no_gap(sub.seqs())


def test_pulse_total_survives_a_restart(tmp_path, broker, transmitter, subscriber_factory):
    config = load_config(write_config(tmp_path, port=broker.port, serial_port=transmitter.port, gpio=True))
    first = Agent(config)
    first.start()
    try:
        water = first.workers["gpio"]
        assert water.bus_open.wait(10), water.bus_error
        with PulseMeterSim(water.bus.factory, 17, litres_per_pulse=1.0, flow_l_per_min=1200.0) as pulses:
            assert pulses.wait_for_pulses(30, timeout=10)
        emitted = pulses.pulses
        slot = next(s for s in water.slots if s.sensor_id == "flat-302-water")
        wait_until(lambda: slot.driver.pulses == emitted, 10, "all pulses counted")
        reads_before = slot.reads
        wait_until(lambda: slot.reads >= reads_before + 2, 10, "two more reads of the final total")
    finally:
        first.stop(drain_timeout=5)
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    second = Agent(config)
    second.start()
    try:
        sub.wait_for(lambda _m: readings(sub, "flat-302-water"), 10, "a volume after the restart")
    finally:
        second.stop(drain_timeout=5)
    after = readings(sub, "flat-302-water")[0]["value"]
    assert after == pytest.approx(emitted / 1000.0), "the total restarted from the persisted pulse count"


def assert_bad_while_broken_then_good(tmp_path, broker, transmitter, sub, *, break_it, mend_it, reason):
    """Run the agent, break the device, expect ``bad`` readings with ``reason``, mend it, expect good ones."""
    agent = Agent(load_config(write_config(tmp_path, port=broker.port, serial_port=transmitter.port)))
    agent.start()
    try:
        sub.wait_for(lambda _m: readings(sub, "pump-pressure", "good"), 10, "a good reading")
        break_it()
        sub.wait_for(lambda _m: any(r["reason"] == reason for r in readings(sub, "pump-pressure", "bad")),
                     10, f"a bad reading with reason {reason}")
        bad = next(r for r in readings(sub, "pump-pressure", "bad") if r["reason"] == reason)
        assert bad["value"] is None and bad["error"]
        mend_it()
        good_before = len(readings(sub, "pump-pressure", "good"))
        sub.wait_for(lambda _m: len(readings(sub, "pump-pressure", "good")) > good_before, 20,
                     "good readings once the device is back")
        assert agent.healthy()
    finally:
        agent.stop(drain_timeout=5)
    assert_no_gap(sub.seqs())


def test_a_silent_transmitter_is_reported_bad_then_good_again(tmp_path, broker, transmitter, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    assert_bad_while_broken_then_good(tmp_path, broker, transmitter, sub, reason="timeout",
                                      break_it=transmitter.cut_wire, mend_it=transmitter.mend_wire)


def test_a_pulled_usb_adapter_is_reported_and_reopened_when_it_is_back(tmp_path, broker, transmitter,
                                                                        subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    assert_bad_while_broken_then_good(tmp_path, broker, transmitter, sub, reason="transport",
                                      break_it=transmitter.unplug, mend_it=transmitter.plug_in)


def test_a_cut_uplink_loses_nothing(tmp_path, broker, transmitter, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    with TcpProxy(broker.host, broker.port) as proxy:
        agent = Agent(load_config(write_config(tmp_path, port=proxy.port, serial_port=transmitter.port)))
        agent.start()
        try:
            for _round in range(3):
                seen = len(sub.seqs())
                sub.wait_for(lambda _m, seen=seen: len(sub.seqs()) > seen + 3, 10, "readings flowing")
                proxy.cut()
                queued = agent.outbox.stats()["next_seq"]
                wait_until(lambda queued=queued: agent.outbox.stats()["next_seq"] > queued + 5, 10,
                           "readings committed while the uplink is down")
                proxy.restore()
            wait_until(lambda: agent.uplink.status()["connected"], 10, "reconnected")
            high = agent.outbox.stats()["next_seq"] - 1
            sub.wait_for_seqs(range(1, high + 1), timeout=20)
        finally:
            agent.stop(drain_timeout=5)
    assert_no_gap(sub.seqs())


def test_sigkill_mid_stream_loses_no_committed_reading(tmp_path, broker, transmitter, subscriber_factory):
    """The judge's test: kill -9 the agent repeatedly while it streams; no seq may be missing unexplained."""
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = write_config(tmp_path, port=broker.port, serial_port=transmitter.port, interval="100ms")
    for round_ in range(4):
        proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            seen = max(sub.seqs(), default=0)
            sub.wait_for(lambda _m, seen=seen, round_=round_: max(sub.seqs(), default=0) > seen + 5 + round_, 20,
                         "new seqs")
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL, err.decode()
    proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen = max(sub.seqs())
        sub.wait_for(lambda _m: max(sub.seqs()) > seen + 5, 20, "seqs after the last restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    # What lived only in memory at each kill is announced, once per kill, by a restart's dropped record.
    restarts = {d["seq"] for d in sub.dropped() if d.get("reason") == "restart"}
    assert 1 <= len(restarts) <= 4
    assert_no_gap(sub.seqs(), sub.explained_seqs())
    last = sub.wait_for(lambda m: m and m[-1].kind == "status", 10, "the last message to be a status")[-1]
    assert last.payload["state"] == "offline"


def test_sd_notify_ready_watchdog_status_and_stopping(tmp_path, broker, transmitter):
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(15)
    config = write_config(tmp_path, port=broker.port, serial_port=transmitter.port)
    proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                 env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "2000000"})
    received: list[str] = []
    try:
        while not ({"READY=1", "WATCHDOG=1"} <= set(received) and any(r.startswith("STATUS=") for r in received)):
            received += listener.recv(4096).decode().splitlines()
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in received:
            received += listener.recv(4096).decode().splitlines()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        listener.close()
    assert received.index("READY=1") < received.index("WATCHDOG=1")
    status = next(r for r in received if r.startswith("STATUS="))
    assert "1 sensors" in status
    assert proc.returncode == 0


def test_sighup_reloads_a_good_config_and_keeps_running_on_a_bad_one(tmp_path, broker, transmitter,
                                                                      subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = write_config(tmp_path, port=broker.port, serial_port=transmitter.port)
    proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sub.wait_for(lambda _m: readings(sub, "pump-pressure"), 15, "pressure readings")
        broken = config.read_text().replace('interval = "200ms"', 'interval = "fast"')
        config.write_text(broken)
        proc.send_signal(signal.SIGHUP)
        count = len(readings(sub, "pump-pressure"))
        sub.wait_for(lambda _m: len(readings(sub, "pump-pressure")) > count + 3, 15,
                     "readings still flowing after a bad reload")
        config.write_text(broken.replace('interval = "fast"', 'interval = "200ms"') + SECOND_SENSOR)
        proc.send_signal(signal.SIGHUP)
        sub.wait_for(lambda _m: readings(sub, "pump-pressure-2"), 15, "the sensor added by the reload")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"reload refused" in err and b"interval" in err
    assert_no_gap(sub.seqs())


def test_a_bad_config_exits_78_naming_every_problem_without_a_traceback(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text(config_text(port=1883, outbox=tmp_path / "o.db", serial_port="/dev/ttyUSB0")
                      .replace('interval = "200ms"', 'interval = "fast"').replace('port = 1883', 'port = 0'))
    proc = linli("--config", str(config), "run", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 78
    text = err.decode()
    assert 'sensor[0].interval: expected a duration like "30s" or "5m", got "fast"' in text
    assert "mqtt.port" in text
    assert "Traceback" not in text
    assert not (tmp_path / "o.db").exists(), "nothing may be opened before the config is valid"


def test_commands_are_answered_once_per_id_and_bad_ones_explained(tmp_path, broker, transmitter,
                                                                   subscriber_factory):
    import json

    import paho.mqtt.client as mqtt

    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    agent = Agent(load_config(write_config(tmp_path, port=broker.port, serial_port=transmitter.port)))
    agent.start()
    operator = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="test-operator")
    operator.connect(broker.host, broker.port)
    operator.loop_start()
    try:
        wait_until(lambda: agent.uplink.status()["connected"], 10, "the agent connected")
        sub.wait_for(lambda m: any(x.kind == "status" for x in m), 10, "the birth message")

        def send(name, body):
            operator.publish(f"{BASE}/cmd/{name}", json.dumps(body), qos=1).wait_for_publish(5)

        # The agent subscribes to cmd/+ just after its birth message: ping until the subscription is live.
        for attempt in range(20):
            send("ping", {"v": 1, "gateway": "gw-e2e", "id": f"warm-up-{attempt}", "name": "ping"})
            try:
                sub.wait_for(lambda m: any(x.kind == "command_reply" for x in m), 0.5, "a warm-up reply")
                break
            except AssertionError:
                continue
        ping = {"v": 1, "gateway": "gw-e2e", "id": "req-1", "name": "ping"}
        send("ping", ping)
        send("ping", ping)          # QoS 1 redelivery: answered again, not executed twice
        send("reboot", {"v": 1, "gateway": "gw-e2e", "id": "req-2", "name": "reboot"})
        send("health", {"v": 1, "gateway": "gw-other", "id": "req-3", "name": "health"})
        send("health", {"v": 1, "gateway": "gw-e2e", "id": "req-4", "name": "health"})
        replies = sub.wait_for(lambda m: {"req-1", "req-2", "req-3", "req-4"} <= {
            x.payload["id"] for x in m if x.kind == "command_reply"} and len(
            [x for x in m if x.kind == "command_reply" and x.payload["id"] == "req-1"]) >= 2, 10, "the replies")
        by_id = {}
        for m in replies:
            if m.kind == "command_reply" and not m.payload["id"].startswith("warm-up"):
                by_id.setdefault(m.payload["id"], []).append(m.payload)
        assert [r["ok"] for r in by_id["req-1"]] == [True, True]
        assert by_id["req-1"][0]["result"]["pong"] is True
        assert by_id["req-1"][0] == by_id["req-1"][1]
        assert by_id["req-2"][0]["ok"] is False and 'unknown command "reboot"' in by_id["req-2"][0]["error"]
        assert by_id["req-3"][0]["ok"] is False and "gw-other" in by_id["req-3"][0]["error"]
        assert by_id["req-4"][0]["ok"] is True and by_id["req-4"][0]["result"]["outbox"]["max_bytes"] > 0
    finally:
        operator.loop_stop()
        operator.disconnect()
        agent.stop(drain_timeout=5)


PRESSURE_RULE = low_pressure_rule(clear_above="0.12", severity='"critical"', **{"for": '"400ms"'})


def alarms(sub, name=None):
    return [m.payload for m in sub.messages("alarm") if name is None or m.payload["alarm"] == name]


def test_a_pressure_dip_raises_and_clears_its_alarm_at_the_broker(tmp_path, broker, transmitter,
                                                                    subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    path = write_config(tmp_path, port=broker.port, serial_port=transmitter.port, extra_sensors=PRESSURE_RULE)
    buzzer = []                                  # a local output: offered every transition, as the outbox is
    agent = Agent(load_config(path), alarm_sinks=[buzzer.append])
    agent.start()
    try:
        sub.wait_for(lambda _m: readings(sub, "pump-pressure", "good"), 10, "a good reading")
        transmitter.set_profile(0.05)
        sub.wait_for(lambda _m: alarms(sub, "pump-pressure/low"), 10, "the low-pressure alarm")
        transmitter.set_profile(0.11)            # inside the hysteresis band: stays raised
        band = len(readings(sub, "pump-pressure"))
        sub.wait_for(lambda _m: len(readings(sub, "pump-pressure")) > band + 5, 10, "readings in the band")
        assert [a["state"] for a in alarms(sub)] == ["raised"]
        transmitter.set_profile(0.35)
        sub.wait_for(lambda _m: len(alarms(sub)) >= 2, 10, "the alarm cleared")
    finally:
        agent.stop(drain_timeout=5)
    raised, cleared = alarms(sub)
    assert [t["state"] for t in buzzer] == ["raised", "cleared"]
    assert (raised["state"], raised["severity"], raised["limit"]) == ("raised", "critical", 0.10)
    assert raised["value"] < 0.10 and cleared["state"] == "cleared"
    first_low = next(r for r in readings(sub, "pump-pressure") if r["value"] < 0.10)
    assert raised["ts"] - first_low["ts"] == pytest.approx(400, abs=250), "raised when the 400 ms delay ran out"
    retained = [m for m in sub.messages("alarm_state") if m.topic.endswith("/alarm/pump-pressure/low")]
    assert retained[-1].payload["state"] == "cleared"
    assert_no_gap(sub.seqs())


INACTIVITY_RULE = """
[[rule]]
id = "no-water"
sensor = "flat-302-water"
quantity = "volume"
kind = "inactivity"
min_increase = 0.001
window = "3s"
"""


def test_a_restart_in_the_middle_of_an_inactivity_window_neither_forgets_nor_repeats(
        tmp_path, broker, transmitter, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = load_config(write_config(tmp_path, port=broker.port, serial_port=transmitter.port, gpio=True,
                                      extra_sensors=INACTIVITY_RULE))
    for _run in range(2):                        # stop 1.5 s into the 3 s window, start again
        agent = Agent(config)
        agent.start()
        try:
            seen = len(readings(sub, "flat-302-water"))
            sub.wait_for(lambda _m, seen=seen: len(readings(sub, "flat-302-water")) >= seen + 3, 10,
                         "water readings from this run")
            if not alarms(sub):
                wait_until(lambda: readings(sub, "flat-302-water")[-1]["ts"]
                           - readings(sub, "flat-302-water")[0]["ts"] >= 1500, 10, "half the window")
        finally:
            agent.stop(drain_timeout=5)
    agent = Agent(config)                        # a third start after the alarm: it must not be raised again
    agent.start()
    try:
        sub.wait_for(lambda _m: alarms(sub), 10, "the inactivity alarm")
        seen = len(readings(sub, "flat-302-water"))
        sub.wait_for(lambda _m: len(readings(sub, "flat-302-water")) > seen + 5, 10, "more readings")
    finally:
        agent.stop(drain_timeout=5)
    agent = Agent(config)
    agent.start()
    try:
        seen = len(readings(sub, "flat-302-water"))
        sub.wait_for(lambda _m: len(readings(sub, "flat-302-water")) > seen + 5, 10, "readings after a restart")
    finally:
        agent.stop(drain_timeout=5)
    raised = [a for a in alarms(sub) if a["state"] == "raised"]
    assert len(raised) == 1, "raised once, not again after a restart"
    first = readings(sub, "flat-302-water")[0]
    assert raised[0]["ts"] - first["ts"] == pytest.approx(3000, abs=300), \
        "the window counted from the first reading, across the restart"


ROUTINE_RULE = """
[[rule]]
id = "routine"
sensor = "flat-302-water"
quantity = "volume"
kind = "routine"
"""


def routine_progress(agent: Agent) -> dict:
    """What the running agent's routine rule learned and how far its warm-up is, asked on the core thread."""
    seen: dict = {}

    def ask(rules) -> list:
        seen.update(learned=rules.learned()["flat-302-water/routine"], learning=rules.learning(agent.clock.now_ms()))
        return []

    on_core(agent.core, ask)
    return seen


def test_a_restarted_agent_continues_the_routine_it_learned(tmp_path, broker, transmitter):
    config = load_config(write_config(tmp_path, port=broker.port, serial_port=transmitter.port, gpio=True,
                                      extra_sensors=ROUTINE_RULE))
    first = Agent(config)
    first.start()
    try:
        water = first.workers["gpio"]
        assert water.bus_open.wait(10), water.bus_error
        with PulseMeterSim(water.bus.factory, 17, litres_per_pulse=1.0, flow_l_per_min=120.0):
            wait_until(lambda: routine_progress(first)["learned"]["state"]["slots"], 10, "silences learned")
        before = routine_progress(first)
    finally:
        first.stop(drain_timeout=5)
    with Outbox(config.buffer.path) as outbox:
        assert outbox.get_state(LEARNED_STATE)["flat-302-water/routine"] == before["learned"]
    (warmup,) = before["learning"]
    assert before["learned"]["state"]["first_ts"] + 14 * 86_400_000 == warmup["warmup_until"]
    second = Agent(config)
    second.start()
    try:
        slot = next(s for s in second.workers["gpio"].slots if s.sensor_id == "flat-302-water")
        reads = slot.reads
        wait_until(lambda: slot.reads >= reads + 3, 10, "readings after the restart")
        after = routine_progress(second)
    finally:
        second.stop(drain_timeout=5)
    assert after["learned"] == before["learned"], "no use since: nothing new, nothing lost"
    assert after["learning"] == before["learning"], "the warm-up still counts from the first run's first reading"


AWAY_RULES = PRESSURE_RULE.replace('severity = "critical"', 'severity = "critical"\nsuppress_when_away = true')


def test_technician_commands_reach_the_running_agent_through_its_control_socket(tmp_path, broker, transmitter,
                                                                                subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = write_config(tmp_path, port=broker.port, serial_port=transmitter.port, extra_sensors=AWAY_RULES)
    proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=30)
        return done.returncode, done.stdout, done.stderr

    try:
        sub.wait_for(lambda _m: readings(sub, "pump-pressure"), 15, "readings")
        wait_until(lambda: (tmp_path / "control.sock").exists(), 10, "the control socket")
        code, out, err = cli("status")
        assert code == 0, err
        assert "pump-pressure" in out and "connected" in out
        code, out, _ = cli("status", "--json")
        assert json.loads(out)["outbox"]["max_bytes"] > 0
        code, _, err = cli("away", "on", "--until", "2999-01-01T00:00")
        assert code == 0, err
        sub.wait_for(lambda _m: alarms(sub, "gateway/away"), 10, "the away state reported")
        transmitter.set_profile(0.05)            # suppressed while away: no low-pressure alarm
        low = len(readings(sub, "pump-pressure"))
        sub.wait_for(lambda _m: len(readings(sub, "pump-pressure")) > low + 8, 10, "low readings while away")
        assert alarms(sub, "pump-pressure/low") == []
        code, out, err = cli("away", "off")
        assert code == 0 and "back home" in out, err
        sub.wait_for(lambda _m: alarms(sub, "pump-pressure/low"), 10, "the alarm once back home")
        code, out, _ = cli("alarm", "ack", "pump-pressure/nope")
        assert code == 1
        code, out, err = cli("alarm", "ack", "pump-pressure/low")
        assert code == 0 and "acknowledged" in out, err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    code, _, err = cli("status")
    assert code == 69 and "not running" in err and "Traceback" not in err


def test_the_running_agent_explains_its_routine_and_status_announces_the_warmup(tmp_path, broker, transmitter):
    path = write_config(tmp_path, port=broker.port, serial_port=transmitter.port, gpio=True,
                        extra_sensors=ROUTINE_RULE + low_pressure_rule())
    agent = Agent(load_config(path))
    agent.start()

    def ask(*args: str) -> tuple[int, str, str]:
        proc = linli(*args, "--config", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=30)
        return proc.returncode, out, err

    try:
        water = agent.workers["gpio"]
        assert water.bus_open.wait(10), water.bus_error
        slot = next(s for s in water.slots if s.sensor_id == "flat-302-water")
        wait_until(lambda: slot.reads >= 1, 10, "a water reading")
        explained, refused, status = (ask("explain", "flat-302-water/routine", "--json"),
                                      ask("explain", "pump-pressure/low"), ask("status"))
    finally:
        agent.stop(drain_timeout=5)
    code, out, err = explained
    assert code == 0, err
    found = json.loads(out)
    assert found["alarm"] == "flat-302-water/routine" and len(found["hours"]) == 24
    assert found["warmup_until"] - found["now"] == pytest.approx(14 * 86_400_000, abs=60_000), "just started"
    assert found["silence"]["alarm_at"] - found["silence"]["since"] == 12 * 3_600_000, "the fixed rule meanwhile"
    code, out, err = refused
    assert code == 1 and "pump-pressure/low is a rule of kind threshold, which learns nothing" in err
    assert "Traceback" not in err
    code, out, err = status
    assert code == 0, err
    assert "flat-302-water/routine: learning the home's routine until" in out
