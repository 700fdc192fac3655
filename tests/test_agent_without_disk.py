"""The agent when its outbox cannot be used: local rules and alarms go on from memory, nothing is destroyed.

An outbox that cannot be opened at run time (the folder cannot be made, a read-only or full disk)
must not silence the gateway: records are numbered from the clock, held in memory
and sent from there, and ``linli status`` says what is wrong. Something that is not
an outbox where the outbox should be (a typo naming the config file itself) is
refused with exit 78 and left byte for byte as it was.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, config_text, low_pressure_rule, linli

RULE = low_pressure_rule(clear_above="0.12", severity='"critical"')


@pytest.fixture
def dry_main():
    with PressureTransmitterSim(unit_id=1, profile=0.05) as sim:      # below the 0.10 MPa floor
        yield sim


def test_without_a_usable_outbox_the_alarm_and_the_readings_still_reach_the_broker(tmp_path, broker, dry_main,
                                                                                  subscriber_factory):
    # A folder that cannot be made, the configuration being right: /proc takes no new folders, not even root's
    # (what a read-only or failing card does to the outbox at run time).
    unusable = Path(f"/proc/self/linli-{tmp_path.name}")
    config = tmp_path / "edge.toml"
    config.write_text(config_text(port=broker.port, outbox=unusable / "outbox.db", serial_port=dry_main.port)
                      .replace(f'socket = "{unusable / "control.sock"}"', f'socket = "{tmp_path / "control.sock"}"')
                      + RULE)
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sub.wait_for(lambda _m: {m.payload["alarm"] for m in sub.messages("alarm")} >=
                     {"gateway/outbox-unavailable", "pump-pressure/low"} and sub.messages("telemetry"), 20,
                     "the outbox's own alarm, the low-pressure alarm and readings")
        status = linli("--config", str(config), "status", "--json", stdout=subprocess.PIPE)
        out, _ = status.communicate(timeout=30)
        outbox = json.loads(out)["outbox"]
        assert "cannot create the outbox directory" in outbox["unavailable"] and outbox["pending"] >= 0
        text = linli("--config", str(config), "status", stdout=subprocess.PIPE, env={"LANGUAGE": "en"})
        out, _ = text.communicate(timeout=30)
        assert b"not stored:" in out
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    seqs = sub.seqs()
    assert min(seqs) > 10**12                      # numbered from the clock: above anything a file ever held


@pytest.mark.parametrize("foreign", ["config", "other-db"])
def test_an_outbox_path_naming_a_file_that_is_not_an_outbox_exits_78_and_leaves_it_as_it_was(tmp_path, foreign):
    import sqlite3

    config = tmp_path / "edge.toml"
    if foreign == "config":
        target = config                            # the classic typo: path = "edge.toml"
    else:
        target = tmp_path / "customers.db"
        conn = sqlite3.connect(target)
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.commit()
        conn.close()
    config.write_text(config_text(port=1883, outbox=target, serial_port="/dev/null-no-port"))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    proc = linli("--config", str(config), "run", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 78, err.decode()
    assert b"buffer.path" in err and b"Traceback" not in err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before
