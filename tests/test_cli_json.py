"""Every ``--json`` of ``linli``, from real runs, checked against its schema (tests/schemas/cli/, edge/schemas/).

Scripts rely on these shapes; the schemas say what they may rely on. ``status --json`` is the
agent's health payload, so it is checked against the health schema the broker side uses, and
``demo --json`` wraps MQTT messages whose payloads are checked against their own schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from edge import schemas, topics
from edge.cli import build_parser
from edge.simulate.cjt188_meter import Cjt188WaterMeter
from edge.simulate.line import SimulatedLine
from edge.simulate.mbus_meter import MbusWaterMeter
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import linli
from tests.live_agent import agent_process, write_agent_config
from tests.test_cli import leaf_commands
from tests.test_evaluate import NO_WATER_12H
from tests.test_rules_scenarios import ROOT, TRACES, gateway_config

CLI_SCHEMAS = Path(__file__).parent / "schemas" / "cli"
#: Each command with ``--json`` and the schemas its output may take (one per line for the streaming ones).
SCHEMA_OF = {
    "config check": ["config_check"],
    "config apply": ["config_apply"],    # run against a live agent by tests/test_config_remote.py
    "decode": ["decode", "decode_error"],
    "replay": ["replay"],
    "evaluate": ["evaluate"],
    "explain": ["explain"],
    "status": ["agent_health"],
    "away": ["away"],
    "alarm ack": ["alarm_ack"],
    "alarm list": ["alarm_list"],
    "alarm test": ["alarm_test"],
    "watch": ["watch"],
    "doctor": ["doctor"],
    "outbox stats": ["outbox_stats"],
    "outbox peek": ["outbox_peek"],
    "probe serial": ["probe_serial"],
    "scan mbus": ["scan_mbus"],
    "scan cjt188": ["scan_cjt188"],
    "demo": ["demo"],
    "update": ["update"],    # run under systemd by tests/test_systemd_update.py
    "audit": ["audit"],      # run against a live agent by tests/test_audit.py
}


#: MQTT's envelope around a payload, which the control socket's answers have not.
ENVELOPE = ("v", "gateway", "ts")


def schema(name: str) -> dict:
    if name == "agent_health":   # the agent's health payload, as the control socket gives it: without the envelope
        health = schemas.load("health")
        health["required"] = [key for key in health["required"] if key not in ENVELOPE]
        return health
    if name in schemas.NAMES:
        return schemas.load(name)
    return json.loads((CLI_SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def check(name: str, value: object) -> None:
    errors = sorted(Draft202012Validator(schema(name)).iter_errors(value), key=str)
    assert not errors, f"{name}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def run(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    process = linli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_every_command_with_json_output_has_a_schema_and_each_schema_is_valid():
    with_json = {name for name, parser in leaf_commands(build_parser())
                 if any("--json" in action.option_strings for action in parser._actions)}
    assert with_json == set(SCHEMA_OF)
    names = {name for names in SCHEMA_OF.values() for name in names}
    assert {path.name.removesuffix(".schema.json") for path in CLI_SCHEMAS.iterdir()} == names - {"agent_health"}
    for name in names:
        Draft202012Validator.check_schema(schema(name))


def test_a_schema_rejects_what_it_should():
    with pytest.raises(AssertionError, match="config_check"):
        check("config_check", {"ok": True, "path": "edge.toml", "gateway": "gw-1", "buses": -1, "sensors": 0})
    with pytest.raises(AssertionError, match="replay"):
        check("replay", {"alarm": "no-slash", "state": "raised", "ts": "t", "severity": None, "value": 1,
                         "limit": 2})


def test_config_check_json():
    code, out, err = run("config", "check", str(TRACES / "daiad_routine.toml"), "--json")
    assert code == 0, err
    check("config_check", json.loads(out))


@pytest.mark.parametrize("protocol, frame", [
    ("mbus", "10 5B 01 5C 16"),
    ("modbus", "01 03 00 02 00 03 A4 0B"),
    ("cjt188", (ROOT / "tests/data/cjt188/tutorial_read_data_reply_2018.hex").read_text()),
    ("mr60bha2", "01.69.75.00.04.0A.15.F9.00.00.00.00.FF"),
])
def test_decode_json(protocol, frame):
    code, out, err = run("decode", protocol, *frame.split(), "--json")
    body = json.loads(out)
    assert code == 0, err
    check("decode", body)
    assert body.get("protocol", "mr60bha2") == protocol and body.get("frames", [{}]) != []


def test_decode_json_of_a_capture_with_garbage_around_the_frame():
    frame = (ROOT / "tests/data/cjt188/tutorial_read_data_reply_2018.hex").read_text().split()
    code, out, err = run("decode", "cjt188", "00", "13", *frame, "FF", "--json")
    assert code == 0, err
    body = json.loads(out)
    check("decode", body)
    assert body["skipped"] == [{"offset": 0, "length": 2}, {"offset": 2 + len(frame), "length": 1}]


def test_decode_json_of_a_bad_frame():
    code, out, _ = run("decode", "mbus", "10", "5B", "--json")
    assert code == 65
    check("decode_error", json.loads(out))


def test_replay_json_lines(tmp_path):
    config = gateway_config(tmp_path, NO_WATER_12H)
    code, out, err = run("replay", "--config", str(config), str(TRACES / "inactivity_12h.csv"), "--json")
    assert code == 0, err
    lines = out.splitlines()
    assert lines, "the week raises alarms"
    for line in lines:
        check("replay", json.loads(line))


def test_evaluate_json_with_incidents_and_the_curve():
    code, out, err = run("evaluate", "--config", str(TRACES / "daiad_routine.toml"),
                         str(TRACES / "daiad_alone_spring.csv"), "--incidents", "2", "--json")
    assert code == 0, err
    body = json.loads(out)
    check("evaluate", body)
    assert all("incidents" in rule and "curve" in rule for rule in body["rules"])


def test_explain_json_from_a_trace():
    code, out, err = run("explain", "--config", str(TRACES / "daiad_routine.toml"), "--trace",
                         str(TRACES / "daiad_alone_spring.csv"), "daiad-f7d6557e/routine", "--json")
    assert code == 0, err
    check("explain", json.loads(out))


def test_probe_and_scan_json_against_simulated_meters():
    meters = [MbusWaterMeter(5, "12345675"), MbusWaterMeter(6, "12345676")]
    with SimulatedLine(meters, parity="N") as line:
        answered = run("probe", "serial", line.path, "--parity", "N", "--protocol", "mbus", "--address", "5",
                       "--timeout", "0.3", "--json")
        silent = run("probe", "serial", line.path, "--parity", "N", "--protocol", "mbus", "--address", "9",
                     "--timeout", "0.1", "--json")
        scanned = run("scan", "mbus", line.path, "--parity", "N", "--from", "4", "--to", "7", "--json")
    assert (answered[0], silent[0], scanned[0]) == (0, 69, 0), (answered[2], silent[2], scanned[2])
    for _code, out, _err in (answered, silent):
        check("probe_serial", json.loads(out))
    body = json.loads(scanned[1])
    check("scan_mbus", body)
    assert [found["address"] for found in body["found"]] == [5, 6]
    with SimulatedLine([Cjt188WaterMeter("00000805000001")], parity="N") as line:
        code, out, err = run("scan", "cjt188", line.path, "--parity", "N", "--json")
    assert code == 0, err
    check("scan_cjt188", json.loads(out))
    with SimulatedLine([], parity="N") as line:
        code, out, err = run("scan", "cjt188", line.path, "--parity", "N", "--timeout", "0.1", "--json")
    assert code == 69, err
    check("scan_cjt188", json.loads(out))


def test_agent_commands_json(tmp_path, broker):
    with PressureTransmitterSim(unit_id=1, profile=0.35) as transmitter:
        config = write_agent_config(tmp_path / "edge.toml", broker_port=broker.port, serial_port=transmitter.port,
                                    state=tmp_path)
        with agent_process([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], config):
            status = run("status", "--config", str(config), "--json")
            away_on = run("away", "on", "--until", "2099-12-01T18:00", "--config", str(config), "--json")
            away_off = run("away", "off", "--config", str(config), "--json")
            ack = run("alarm", "ack", "pump-pressure/low", "--config", str(config), "--json")
            tested = run("alarm", "test", "--for", "30", "--config", str(config), "--json")
            listed = run("alarm", "list", "--config", str(config), "--json")
            watched = run("watch", "--for", "2", "--config", str(config), "--json")
            stats = run("outbox", "stats", "--config", str(config), "--json")
            peeked = run("outbox", "peek", "5", "--config", str(config), "--json")
        doctor = run("doctor", "--config", str(config), "--json")
    for code, _, err in (status, away_on, away_off, ack, tested, listed, watched, stats, peeked):
        assert code == 0, err
    check("alarm_test", json.loads(tested[1]))
    check("alarm_list", json.loads(listed[1]))
    assert "gateway/test" in {alarm["alarm"] for alarm in json.loads(listed[1])["alarms"]}
    events = [json.loads(line) for line in watched[1].splitlines()]
    for event in events:
        check("watch", event)
    assert any(event["event"] == "reading" and event["sensor"] == "pump-pressure" for event in events)
    check("outbox_stats", json.loads(stats[1]))
    assert json.loads(stats[1])["agent"]["running"] is True
    for line in peeked[1].splitlines():
        check("outbox_peek", json.loads(line))
    check("doctor", json.loads(doctor[1]))          # whatever it found: its exit status says whether it failed
    assert doctor[0] in (0, 1) and doctor[0] == int(any(c["status"] == "fail" for c in json.loads(doctor[1])["checks"]))
    check("agent_health", json.loads(status[1]))
    assert "rs485-1" in {bus["bus"] for bus in json.loads(status[1])["buses"]}
    check("away", json.loads(away_on[1]))
    check("away", json.loads(away_off[1]))
    assert json.loads(away_on[1])["away"] is True and json.loads(away_off[1])["away"] is False
    check("alarm_ack", json.loads(ack[1]))


def test_demo_json_lines_and_their_payloads(broker):
    code, out, err = run("demo", "--for", "3", "--json", "--gateway-id", "gw-json",
                         "--broker", f"{broker.host}:{broker.port}")
    assert code == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    assert messages
    base = messages[0]["topic"].rsplit("/", 1)[0]
    for message in messages:
        check("demo", message)
        check(topics.kind_of(base, message["topic"]), message["payload"])
