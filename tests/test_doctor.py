"""``linli doctor`` on whole gateways: a pump room whose transmitter is pymodbus's server behind a pseudo-terminal,
a real mosquitto, a real outbox, and the agent itself where it runs.

Each command runs as its own process, as a technician runs it; the I2C checks run in this process because
a simulated I2C bus lives in the process that registers it.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import serial

from buffer.outbox import Outbox, Priority
from drivers.transports import i2c
from edge.config import load_config
from edge.control import request
from edge.doctor import run_checks
from edge.doctor_broker import not_after
from edge.simulate.broker import TlsListener, free_port
from edge.simulate.i2c_chips import Ads1115, FakeSMBus
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import ROOT, config_text, linli
from tests.live_agent import agent_process
from tests.mqtt_helpers import _openssl, wait_until

KEYS = {"check", "status", "detail", "fix"}


def doctor(config: Path, *args: str, env: dict | None = None) -> tuple[int, str, str]:
    process = linli("doctor", "--config", str(config), *args, env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def checks(config: Path, env: dict | None = None) -> tuple[int, dict[str, dict]]:
    """The JSON checklist by check name, after checking its shape."""
    code, out, err = doctor(config, "--json", env=env)
    assert err == "", err
    body = json.loads(out)
    assert list(body) == ["checks"]
    for line in body["checks"]:
        assert set(line) == KEYS and all(isinstance(value, str) for value in line.values()), line
        assert line["status"] in ("pass", "warn", "fail"), line
        assert bool(line["fix"]) == (line["status"] != "pass"), line   # every warning and failure says what to do
    names = [line["check"] for line in body["checks"]]
    assert len(names) == len(set(names)), names
    assert code == (1 if any(line["status"] == "fail" for line in body["checks"]) else 0)
    return code, {line["check"]: line for line in body["checks"]}


def write_config(tmp_path: Path, *, broker_port: int, serial_port: str, **options) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(config_text(port=broker_port, outbox=tmp_path / "outbox.db", serial_port=serial_port, **options))
    return path


@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


def fresh_outbox(path: Path) -> None:
    """An outbox holding one status record stamped now, as a stopped agent leaves it."""
    outbox = Outbox(path)
    outbox.add({"kind": "status", "ts": int(datetime.datetime.now().timestamp() * 1000), "state": "online"},
               Priority.STATUS)
    outbox.close()


# --- the agent stopped ------------------------------------------------------------------------------------------
def test_a_missing_rs485_adapter_fails_naming_the_port(tmp_path, broker):
    config = write_config(tmp_path, broker_port=broker.port, serial_port="/dev/ttyUSB7")
    code, found = checks(config)
    assert code == 1
    assert found["bus:rs485-1"]["status"] == "fail"
    assert "/dev/ttyUSB7" in found["bus:rs485-1"]["detail"] and "adapter" in found["bus:rs485-1"]["fix"]
    assert "device:pump-pressure" not in found   # its bus failed: the line above says why, once
    assert found["broker"]["status"] == "pass"


def test_a_healthy_gateway_has_no_failure(tmp_path, broker, transmitter):
    fresh_outbox(tmp_path / "outbox.db")
    config = write_config(tmp_path, broker_port=broker.port, serial_port=transmitter.port, gpio=True)
    requests_before = len(transmitter.requests)
    code, found = checks(config)
    assert code == 0, found
    assert [name for name, line in found.items() if line["status"] == "fail"] == []
    assert found["config"]["status"] == "pass"
    assert found["bus:rs485-1"]["status"] in ("pass", "warn")   # warn: the simulator keeps its end of the pty open
    assert found["device:pump-pressure"]["status"] == "pass"
    assert re.search(r"address 1 on \S+ answered in [\d.]+ ms", found["device:pump-pressure"]["detail"])
    assert len(transmitter.requests) == requests_before + 1   # one request, no more
    assert found["bus:gpio"]["status"] == "pass" and "MockFactory" in found["bus:gpio"]["detail"]
    assert found["broker"]["status"] == "pass" and f"127.0.0.1:{broker.port}" in found["broker"]["detail"]
    assert found["outbox"]["status"] == "pass" and "1 records waiting" in found["outbox"]["detail"]
    assert found["disk"]["status"] == "pass"


def test_an_unreachable_broker_fails_naming_host_and_port(tmp_path, transmitter):
    port = free_port()
    code, found = checks(write_config(tmp_path, broker_port=port, serial_port=transmitter.port))
    assert code == 1
    assert found["broker"]["status"] == "fail"
    assert f"127.0.0.1:{port}" in found["broker"]["detail"] and f"127.0.0.1:{port}" in found["broker"]["fix"]


def test_a_silent_device_fails_with_the_usual_suspects(tmp_path, broker, transmitter):
    transmitter.cut_wire()
    code, found = checks(write_config(tmp_path, broker_port=broker.port, serial_port=transmitter.port))
    assert code == 1
    line = found["device:pump-pressure"]
    assert line["status"] == "fail" and f"address 1 on {transmitter.port}" in line["detail"]
    assert "no answer" in line["detail"] and "A and B swapped" in line["fix"]


def test_a_port_held_by_another_process_fails_naming_it(tmp_path, broker, transmitter):
    with serial.Serial(transmitter.port, exclusive=True):   # what another program holding the port does
        code, found = checks(write_config(tmp_path, broker_port=broker.port, serial_port=transmitter.port))
    assert code == 1
    line = found["bus:rs485-1"]
    assert line["status"] == "fail"
    assert f"serial port {transmitter.port} is held by" in line["detail"] and f"pid {os.getpid()}" in line["detail"]
    assert f"fuser -v {transmitter.port}" in line["fix"]


def client_cert(pki, directory: Path, days: int) -> tuple[Path, Path]:
    """A client certificate for gw-e2e signed by the test CA, valid for ``days`` days."""
    directory.mkdir()
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=gw-e2e", "-keyout", "gw.key", "-out", "gw.csr",
             cwd=directory)
    _openssl("x509", "-req", "-in", "gw.csr", "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_cert.with_suffix(".key")),
             "-CAcreateserial", "-days", str(days), "-extfile", "client.ext", "-out", "gw.crt", cwd=directory)
    return directory / "gw.crt", directory / "gw.key"


def test_a_certificate_expiring_in_ten_days_warns_and_still_connects(tmp_path, pki, broker_factory, transmitter):
    broker = broker_factory(tls=TlsListener(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key)))
    cert, key = client_cert(pki, tmp_path / "pki", days=10)
    tls = f'tls = true\nca_file = "{pki.ca_cert}"\ncert_file = "{cert}"\nkey_file = "{key}"'
    code, found = checks(write_config(tmp_path, broker_port=broker.port, serial_port=transmitter.port,
                                      mqtt_extra=tls))
    line = found["certificate"]
    assert line["status"] == "warn" and str(cert) in line["detail"]
    assert re.search(r"in (9|10) days", line["detail"]) and "make-gateway-cert.sh" in line["fix"]
    assert found["broker"]["status"] == "pass" and "with TLS" in found["broker"]["detail"]
    assert code == 0


def test_a_renewed_certificate_is_the_one_checked(tmp_path, pki, broker_factory, transmitter):
    """After cert_install the pair in <state>/tls is in use: its end date is the one that warns, and it connects."""
    broker = broker_factory(tls=TlsListener(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key)))
    cert, key = client_cert(pki, tmp_path / "configured", days=400)
    renewed_cert, renewed_key = client_cert(pki, tmp_path / "renewed", days=10)
    pair = tmp_path / "tls" / "client.pem"
    pair.parent.mkdir()
    pair.write_bytes(renewed_key.read_bytes() + renewed_cert.read_bytes())
    cert.write_text(cert.read_text().replace("A", "B"))   # the configured files no longer work
    tls = f'tls = true\nca_file = "{pki.ca_cert}"\ncert_file = "{cert}"\nkey_file = "{key}"'
    code, found = checks(write_config(tmp_path, broker_port=broker.port, serial_port=transmitter.port,
                                      mqtt_extra=tls))
    line = found["certificate"]
    assert line["status"] == "warn" and str(pair) in line["detail"], line
    assert found["broker"]["status"] == "pass", found["broker"]
    assert code == 0


def test_the_certificate_end_date_is_read_as_openssl_reads_it(tmp_path, pki):
    cert, _key = client_cert(pki, tmp_path / "pki", days=400)
    said = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", str(cert)], capture_output=True,
                          text=True, check=True).stdout.strip().removeprefix("notAfter=")
    expected = datetime.datetime.strptime(said, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=datetime.timezone.utc)
    assert not_after(cert.read_bytes()) == expected


def test_a_broken_config_fails_with_each_problem_by_its_key(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[gateway]\nid = "gw-1"\ngrid = "a"\n[mqtt]\nhots = "x"\nport = 99999\n')
    code, out, _err = doctor(path, "--json")
    problems = [line for line in json.loads(out)["checks"] if line["check"] == "config"]
    assert code == 1 and [line["status"] for line in problems] == ["fail", "fail"]
    assert problems[0]["detail"].startswith("mqtt.hots:") and problems[1]["detail"].startswith("mqtt.port:")
    assert str(path) in problems[0]["fix"]


def test_the_table_in_chinese_names_the_port(tmp_path, broker):
    config = write_config(tmp_path, broker_port=broker.port, serial_port="/dev/ttyUSB7")
    code, out, err = doctor(config, env={"LANGUAGE": "zh_CN", "NO_COLOR": "1"})
    assert code == 1 and err == ""
    row = next(line for line in out.splitlines() if "bus:rs485-1" in line)
    assert row.startswith("失败") and "串口 /dev/ttyUSB7 不存在" in row
    assert "修复：" in out and "\033[" not in out
    assert re.search(r"1 项失败", out)


def test_no_systemd_watchdog_is_a_failure(tmp_path, broker, transmitter):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text("#!/bin/sh\nprintf 'LoadState=loaded\\nActiveState=active\\nWatchdogUSec=0\\n'\n")
    (fake / "systemctl").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}
    _code, found = checks(write_config(tmp_path, broker_port=broker.port, serial_port=transmitter.port), env=env)
    assert found["watchdog"]["status"] == "fail" and "WatchdogSec=" in found["watchdog"]["fix"]


# --- I2C, in this process ---------------------------------------------------------------------------------------
I2C_SENSORS = """
[[bus]]
name = "i2c-1"
kind = "i2c"
simulator = "doctor"

[[sensor]]
id = "riser-pressure"
driver = "ads1115_loop"
bus = "i2c-1"
address = 0x48
channel = 0
shunt_ohms = 150.0
span = [0.0, 1.6]
interval = "1s"

[[sensor]]
id = "tank-pressure"
driver = "ads1115_loop"
bus = "i2c-1"
address = 0x49
channel = 0
shunt_ohms = 150.0
span = [0.0, 1.6]
interval = "1s"
"""


def test_i2c_addresses_that_answer_pass_and_a_missing_one_fails_named(tmp_path, broker, transmitter):
    i2c.SIMULATED["doctor"] = FakeSMBus(Ads1115(0x48, {0: 1.0}))
    try:
        config = load_config(write_config(tmp_path, broker_port=broker.port, serial_port=transmitter.port,
                                          extra_sensors=I2C_SENSORS))
        found = {line["check"]: line for line in run_checks(config, agent_running=False)}
    finally:
        del i2c.SIMULATED["doctor"]
    assert found["bus:i2c-1"]["status"] == "pass"
    assert found["device:riser-pressure"]["status"] == "pass"
    assert "0x48 on /dev/i2c-1" in found["device:riser-pressure"]["detail"]
    missing = found["device:tank-pressure"]
    assert missing["status"] == "fail" and "0x49 on /dev/i2c-1" in missing["detail"]
    assert "i2cdetect -y -r 1" in missing["fix"]


# --- the agent running ------------------------------------------------------------------------------------------
def test_with_the_agent_running_buses_and_devices_come_from_its_health(tmp_path, broker, transmitter):
    config = write_config(tmp_path, broker_port=broker.port, serial_port=transmitter.port)
    socket_path = load_config(config).control.socket
    with agent_process([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], config, cwd=ROOT):
        wait_until(lambda: _sensor(socket_path)["reads"] > 0, 15, "a first reading")
        code, found = checks(config)
        assert code == 0, found
        # Opening the port the agent holds exclusively would have failed as "held by": it was not opened.
        assert found["bus:rs485-1"]["status"] == "pass" and "running agent" in found["bus:rs485-1"]["detail"]
        assert found["device:pump-pressure"]["status"] == "pass"
        assert "by the running agent" in found["device:pump-pressure"]["detail"]
        assert found["broker"]["status"] == "pass" and "running agent is connected" in found["broker"]["detail"]

        transmitter.cut_wire()
        wait_until(lambda: _sensor(socket_path)["last_error"], 15, "the agent to see the cut wire")
        code, found = checks(config)
        line = found["device:pump-pressure"]
        assert code == 1 and line["status"] == "fail"
        assert "the running agent's last error" in line["detail"] and transmitter.port in line["detail"]


def _sensor(socket_path: str) -> dict:
    buses = request(socket_path, "health")["result"]["buses"]
    return buses[0]["sensors"]["pump-pressure"]
