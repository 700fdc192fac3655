"""The ``linli`` command as a technician meets it: exit statuses, --json, no tracebacks, the demo."""

from __future__ import annotations

import json
import subprocess

from tests.agent_helpers import config_text, linli


def run(*args, env=None, timeout=60):
    proc = linli(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def good_config(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(config_text(port=1883, outbox=tmp_path / "o.db", serial_port="/dev/ttyUSB0"))
    return path


def test_version_and_usage_errors():
    code, out, _ = run("version")
    assert code == 0 and out.startswith("linli-edge ")
    code, _, err = run("frobnicate")
    assert code == 64 and "invalid choice" in err
    code, _, err = run()
    assert code == 64 and "config check" in err


def test_config_check_ok_as_text_and_json(tmp_path):
    path = good_config(tmp_path)
    code, out, _ = run("config", "check", str(path))
    assert code == 0 and "gw-e2e" in out and "1 sensors" in out
    code, out, _ = run("--config", str(path), "config", "check", "--json")
    assert code == 0
    assert json.loads(out) == {"ok": True, "path": str(path), "gateway": "gw-e2e", "buses": 1, "sensors": 1}
    assert not (tmp_path / "o.db").exists(), "config check opens nothing"


def test_config_check_reports_every_problem_with_exit_78(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(good_config(tmp_path).read_text().replace('address = 1', 'address = 300')
                    .replace('baudrate', 'baud'))
    code, _, err = run("config", "check", str(path))
    assert code == 78
    assert "sensor[0].address" in err and "300" in err
    assert "Traceback" not in err


def test_config_check_speaks_chinese_under_a_chinese_locale(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(good_config(tmp_path).read_text().replace('interval = "200ms"', 'interval = "fast"'))
    code, _, err = run("config", "check", str(path), env={"LANGUAGE": "zh_CN"})
    assert code == 78
    assert "sensor[0].interval" in err
    assert any("\u4e00" <= ch <= "\u9fff" for ch in err), err


def test_missing_config_file_is_a_clear_error(tmp_path):
    code, _, err = run("config", "check", str(tmp_path / "nope.toml"))
    assert code == 78 and "nope.toml" in err and "Traceback" not in err


def test_demo_streams_readings_to_an_existing_broker_and_stops_cleanly(broker):
    code, out, err = run("demo", "--for", "8", "--json", "--gateway-id", "gw-cli-demo",
                         "--broker", f"{broker.host}:{broker.port}", timeout=60)
    assert code == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    topics = [m["topic"].rsplit("gw-cli-demo/", 1)[1] for m in messages]
    assert topics[0] == "status" and messages[0]["payload"]["state"] == "online"
    records = [r for m in messages if m["topic"].endswith("/telemetry") for r in m["payload"]["records"]]
    devices = {"pump-pressure", "pump-flow", "flat-101-water", "flat-102-water", "flat-201-water", "flat-202-water",
               "flat-302-water", "jockey-pump", "bed-201", "riser-pressure"}
    assert {r["sensor"] for r in records if r["quality"] == "good"} >= devices
    # The radar's first read finds nothing measured yet (bad, not_reported); it is read every 5 s.
    assert {r["sensor"] for r in records} == devices | {"bed-201-radar"}
    assert messages[-1]["payload"]["state"] == "offline"
    assert "demo stopped" in err


def test_demo_starts_its_own_broker():
    code, out, err = run("demo", "--for", "4", timeout=60)
    assert code == 0, err
    assert "broker: started mosquitto on 127.0.0.1:" in out
    assert "pump-pressure" in out and "offline" in out


def test_demo_with_an_unreachable_broker_exits_69(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # bound, not listening: connection refused
        code, _, err = run("demo", "--for", "2", "--broker", f"127.0.0.1:{port}")
    assert code == 69 and "cannot reach the MQTT broker" in err and "Traceback" not in err
