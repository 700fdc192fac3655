"""``linli watch``, ``linli alarm list|test`` and ``linli logs`` against a real agent, broker and terminal.

The agent is ``linli run`` as a process (tests/live_agent.py) reading pymodbus's pressure
transmitter behind a pseudo-terminal and publishing to the broker fixture's mosquitto. The
screen is driven in tmux as a person would: typed commands, keys, what the pane shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.alarm_drill import TEST_ALARM
from edge.live import MAX_SERIES, POINTS, SPACING_MS, LiveValues
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, ROOT
from tests.live_agent import agent_process, write_agent_config
from tests.mqtt_helpers import wait_until


@pytest.fixture
def pump_room(tmp_path, broker):
    """A running agent on a simulated pressure transmitter at 0.35 MPa; yields its config file."""
    with PressureTransmitterSim(unit_id=1, profile=0.35) as transmitter:
        config = write_agent_config(tmp_path / "edge.toml", broker_port=broker.port, serial_port=transmitter.port,
                                    state=tmp_path / "state")
        with agent_process([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], config):
            yield config


def linli(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# --- the agent's side -----------------------------------------------------------------------------------------
def reading(sensor: str, quantity: str, value, ts: int) -> dict:
    return {"kind": "reading", "sensor": sensor, "quantity": quantity, "value": value, "unit": "MPa",
            "quality": "good", "ts": ts}


def test_live_values_keep_minutes_of_history_in_bounded_memory():
    live = LiveValues()
    for n in range(1000):                      # four readings a second for 250 s
        live.offer(reading("radar", "heart_rate", float(n), n * 250))
    (row,) = live.snapshot()
    assert row["value"] == 999.0 and len(row["history"]) == 1000 * 250 // SPACING_MS
    for n in range(POINTS * 3):
        live.offer(reading("radar", "heart_rate", float(n), 10**6 + n * SPACING_MS))
    assert len(live.snapshot()[0]["history"]) == POINTS
    for n in range(MAX_SERIES + 10):
        live.offer(reading(f"s{n}", "q", 1, 0))
    assert len(live.snapshot()) == MAX_SERIES


def test_a_bad_reading_is_a_gap_and_a_contact_plots_as_0_or_1():
    live = LiveValues()
    for n, value in enumerate((True, None, False)):
        live.offer(reading("pump", "pump_running", value, n * SPACING_MS))
    assert live.snapshot()[0]["history"] == [1.0, None, 0.0]


# --- linli watch ------------------------------------------------------------------------------------------------
def test_watch_not_on_a_terminal_prints_a_line_per_change_naming_the_sensor(pump_room):
    done = linli("watch", "--config", str(pump_room), "--for", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("pump-pressure" in line and "pressure" in line and "0.35 MPa" in line and "good" in line
               for line in lines), done.stdout
    assert any("broker 127.0.0.1:" in line and " connected" in line for line in lines), done.stdout
    # A steady 0.35 MPa is one change, not a line per reading.
    assert sum("pump-pressure" in line for line in lines) == 1, done.stdout
    assert "\033[" not in done.stdout


def test_watch_json_lines_parse_and_carry_the_reading_and_the_link(pump_room):
    done = linli("watch", "--config", str(pump_room), "--json", "--for", "2")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"event": "reading", "sensor": "pump-pressure", "quantity": "pressure", "value": 0.35, "unit": "MPa",
            "quality": "good"} in events
    assert any(e["event"] == "link" and e["connected"] and e["outbox_depth"] is not None for e in events)


def test_watch_without_an_agent_says_so_and_exits_69(tmp_path, broker):
    config = write_agent_config(tmp_path / "edge.toml", broker_port=broker.port, serial_port="/dev/ttyUSB0",
                                state=tmp_path / "state")
    done = linli("watch", "--config", str(config), "--for", "1")
    assert done.returncode == 69 and "the agent is not running" in done.stderr
    assert "Traceback" not in done.stderr


def _tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        pytest.skip("tmux is not installed (./dev installs it)")
    return found


class Pane:
    """One tmux session on its own server socket, with a shell in which commands are typed."""

    def __init__(self, tmux: str, socket: Path, env: dict[str, str]):
        self.base = [tmux, "-S", str(socket)]
        subprocess.run([*self.base, "new-session", "-d", "-x", "120", "-y", "30", "-s", "t",
                        "env", *(f"{k}={v}" for k, v in env.items()), "bash", "--norc", "--noprofile"],
                       check=True)

    def type(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", *keys], check=True)

    def text(self) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True,
                              check=True).stdout

    def shows(self, predicate, what: str, timeout: float = 20) -> str:
        return wait_until(lambda: (lambda text: text if predicate(text) else None)(self.text()), timeout, what,
                          interval=0.1)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def pane(tmp_path):
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "LANG": "C.UTF-8", "TERM": "xterm-256color",
           "PYTHONPATH": str(ROOT), "PS1": "$ "}
    made = Pane(_tmux(), tmp_path / "tmux.sock", env)
    yield made
    made.close()


def test_watch_in_a_terminal_redraws_the_table_in_place_and_shows_the_test_alarm_on_top(pump_room, pane):
    python = sys.executable
    pane.type(f"{python} -m edge.cli watch --config {pump_room}", "Enter")
    screen = pane.shows(lambda t: "pump-pressure" in t and "0.35" in t, "the pressure row on the screen")
    assert "linli watch" in screen and "outbox" in screen and "connected" in screen
    header = screen.splitlines()[0]
    # Redrawn in place: the header stays on the first line while the clock in it moves on.
    pane.shows(lambda t: t.splitlines()[0] != header and t.splitlines()[0].startswith("linli watch"),
               "the header redrawn with a later time")
    assert linli("alarm", "test", "--config", str(pump_room), "--for", "2").returncode == 0
    screen = pane.shows(lambda t: TEST_ALARM in t, "the test alarm on the screen")
    lines = screen.splitlines()
    alarm_row = next(n for n, line in enumerate(lines) if TEST_ALARM in line)
    sensor_row = next(n for n, line in enumerate(lines) if "pump-pressure" in line)
    assert alarm_row < sensor_row and "info" in lines[alarm_row]
    pane.shows(lambda t: TEST_ALARM not in t, "the test alarm gone once cleared")
    pane.type("q")
    pane.shows(lambda t: "pump-pressure" not in t and t.rstrip().endswith("$"), "the shell back after q")


# --- linli alarm list | test ----------------------------------------------------------------------------------
def test_alarm_test_reaches_the_broker_is_listed_and_clears(pump_room, broker, subscriber_factory):
    central = subscriber_factory(broker.host, broker.port, BASE + "/#")
    done = linli("alarm", "test", "--config", str(pump_room), "--for", "1.5", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"alarm": TEST_ALARM, "raised": True, "clears_in_s": 1.5}
    listed = linli("alarm", "list", "--config", str(pump_room), "--json")
    assert {"alarm": TEST_ALARM, "severity": "info", "acknowledged": False} in json.loads(listed.stdout)["alarms"]

    def states(messages, kind: str) -> list[str]:
        return [m.payload["state"] for m in messages if m.kind == kind and m.payload["alarm"] == TEST_ALARM]

    messages = central.wait_for(lambda ms: states(ms, "alarm") == ["raised", "cleared"]
                                and states(ms, "alarm_state") == ["raised", "cleared"], 15,
                                "the test alarm raised, then cleared, on alarm and on its retained topic")
    raised = next(m.payload for m in messages if m.kind == "alarm" and m.payload["alarm"] == TEST_ALARM)
    assert raised["severity"] == "info" and raised["rule"] == "test" and "test" in raised["message"]
    listed = linli("alarm", "list", "--config", str(pump_room))
    assert listed.returncode == 0 and listed.stdout.strip() == "no alarm is raised", listed.stdout


def test_alarm_test_refuses_a_duration_out_of_bounds(pump_room):
    done = linli("alarm", "test", "--config", str(pump_room), "--for", "0")
    assert done.returncode == 1 and "args.seconds" in done.stderr


# --- linli logs ---------------------------------------------------------------------------------------------------
def fake(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_logs_runs_journalctl_on_the_unit(tmp_path):
    fake(tmp_path, "journalctl", f'echo "$@" > {tmp_path}/args\necho "Dec 06 agent started"\n')
    fake(tmp_path, "systemctl", "echo loaded\n")
    done = linli("logs", "-n", "10", "-f", env={"PATH": str(tmp_path)})
    assert done.returncode == 0 and "agent started" in done.stdout, done.stderr
    assert (tmp_path / "args").read_text().split() == ["--unit", "linli-edge", "--lines", "10", "--no-pager",
                                                       "--follow"]
    done = linli("logs", env={"PATH": str(tmp_path)})
    assert (tmp_path / "args").read_text().split() == ["--unit", "linli-edge", "--lines", "50", "--no-pager"]


def test_logs_without_journalctl_or_without_the_unit_exit_69(tmp_path):
    done = linli("logs", env={"PATH": str(tmp_path)})
    assert done.returncode == 69 and "journalctl is not installed" in done.stderr
    fake(tmp_path, "journalctl", f": > {tmp_path}/ran\n")     # PATH has nothing else: builtins only
    fake(tmp_path, "systemctl", "echo not-found\n")
    done = linli("logs", env={"PATH": str(tmp_path)})
    assert done.returncode == 69 and "linli-edge is not installed" in done.stderr
    assert not (tmp_path / "ran").exists()


def test_logs_passes_journalctls_failure_on(tmp_path):
    fake(tmp_path, "journalctl", "echo 'No journal files were found.' >&2\nexit 1\n")
    done = linli("logs", env={"PATH": str(tmp_path)})
    assert done.returncode == 1 and "No journal files" in done.stderr


# --- linli demo on a terminal ---------------------------------------------------------------------------------
def test_demo_on_a_terminal_shows_the_gateway_and_q_ends_it(pane):
    pane.type(f"{sys.executable} -m edge.cli demo", "Enter")
    screen = pane.shows(lambda t: "linli watch  gw-demo" in t and "flat-101-water" in t and "bed-201-radar" in t,
                        "the demo's gateway on the screen", timeout=60)
    assert "pump-pressure" in screen and "MPa" in screen and " reading " not in screen
    pane.type("q")
    screen = pane.shows(lambda t: "demo stopped" in t, "the demo stopped after q", timeout=60)
    assert "linli watch  gw-demo" not in screen      # the screen is gone, the shell's lines are back


def test_demo_with_lines_on_a_terminal_keeps_the_stream(pane):
    pane.type(f"{sys.executable} -m edge.cli demo --lines --for 6", "Enter")
    screen = pane.shows(lambda t: "demo stopped" in t, "the demo's stream and its end", timeout=60)
    assert " reading " in screen and "linli watch" not in screen
