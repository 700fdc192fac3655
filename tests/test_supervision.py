"""A worker thread that ends without being asked to ends the agent at once with status 70, never lingers."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from edge.agent import Agent
from edge.config import load_config
from edge.simulate.modbus_pressure import PressureTransmitterSim
from edge.supervisor import Supervisor, reason
from tests.agent_helpers import BASE, GATEWAY, ROOT, config_text, low_pressure_rule
from tests.mqtt_helpers import wait_until

pytestmark = pytest.mark.timeout(90)


class Doom(BaseException):
    """Raised where only a BaseException gets through: past every `except Exception` of the agent."""


# --- the supervisor on its own ------------------------------------------------------------------------------
def worker(until: threading.Event, error: BaseException | None = None) -> threading.Thread:
    def run():
        until.wait(10)
        if error is not None:
            thread.error = error

    thread = threading.Thread(target=run, name="worker")
    thread.start()
    return thread


def test_a_watched_thread_that_ends_is_reported_at_once_with_its_error():
    died, end = [], threading.Event()
    reported = threading.Event()
    thread = worker(end, RuntimeError("disk on fire"))
    Supervisor(lambda t: (died.append((t, reason(t))), reported.set())).watch([thread])
    assert not reported.wait(0.2), "nothing to report while it runs"
    end.set()
    assert reported.wait(2)
    assert died == [(thread, "RuntimeError: disk on fire")]


def test_threads_released_before_their_stop_are_not_deaths_until_watched_again():
    died: list = []
    first_end, second_end = threading.Event(), threading.Event()
    first, second = worker(first_end), worker(second_end)
    supervisor = Supervisor(died.append)
    supervisor.watch([first, second])
    supervisor.release()                       # a stop or a reload begins
    first_end.set()
    first.join()
    supervisor.watch([second])                 # the reload kept this one
    second_end.set()
    wait_until(lambda: died, 2, "the kept thread's end reported")
    assert died == [second]
    assert reason(second) == "it returned without being asked to stop"


def test_a_thread_already_dead_when_watched_is_reported():
    died: list = []
    end = threading.Event()
    end.set()
    thread = worker(end)
    thread.join()
    Supervisor(died.append).watch([thread])
    wait_until(lambda: died, 2, "the report")
    assert died == [thread]


def test_a_thread_watched_twice_is_reported_once():
    died: list = []
    end = threading.Event()
    thread = worker(end)
    supervisor = Supervisor(died.append)
    supervisor.watch([thread])
    supervisor.watch([thread])                 # a reload that kept it
    end.set()
    thread.join()
    wait_until(lambda: died, 2, "the report")
    assert [t.name for t in threading.enumerate() if t.name == "worker-watch"] == []
    assert died == [thread]


# --- the real agent ------------------------------------------------------------------------------------------
@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


@pytest.fixture
def restore_signals():
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


LOW_PRESSURE = low_pressure_rule(severity='"critical"')


def test_a_dead_core_ends_run_forever_with_70_within_seconds(tmp_path, broker, transmitter, caplog,
                                                             restore_signals):
    def sink(transition):
        raise Doom("the alarm sink gave up")   # past the core's `except Exception` around its sinks

    path = tmp_path / "edge.toml"
    path.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db", serial_port=transmitter.port,
                                extra_sensors=LOW_PRESSURE))
    transmitter.set_profile(0.05)              # the first reading raises the alarm
    agent = Agent(load_config(path), alarm_sinks=[sink])
    started = time.monotonic()
    with caplog.at_level(logging.CRITICAL, logger="linli.agent"):
        assert agent.run_forever() == 70
    assert time.monotonic() - started < 15
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage().startswith("the core thread ended (Doom: the alarm sink gave up); stopping")
    assert agent.core is None and agent.outbox is None, "stopped what could be stopped"


def test_a_dead_uplink_ends_run_forever_with_70(tmp_path, broker, transmitter, caplog, restore_signals):
    class AgentWithAFatalCommand(Agent):
        def command_handlers(self):
            def fatal(_args):
                raise Doom("a handler raised past the command table")
            return {**super().command_handlers(), "fatal": fatal}

    operator = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="test-operator")
    operator.connect(broker.host, broker.port)
    operator.loop_start()
    try:                                       # retained: delivered the moment the agent subscribes
        operator.publish(f"{BASE}/cmd/fatal", f'{{"v": 1, "gateway": "{GATEWAY}", "id": "f1", "name": "fatal"}}',
                         qos=1, retain=True).wait_for_publish(5)
    finally:
        operator.loop_stop()
        operator.disconnect()
    path = tmp_path / "edge.toml"
    path.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db", serial_port=transmitter.port))
    agent = AgentWithAFatalCommand(load_config(path))
    with caplog.at_level(logging.CRITICAL, logger="linli.agent"):
        assert agent.run_forever() == 70
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage().startswith("the uplink thread ended (Doom: a handler raised past the command table)")


def test_a_bus_thread_killed_by_its_driver_ends_the_process_with_70_promptly(tmp_path, broker, transmitter,
                                                                              subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    fatal_file = tmp_path / "fatal"
    path = tmp_path / "edge.toml"
    path.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db", serial_port=transmitter.port,
                                extra_sensors=f"""
[[bus]]
name = "gpio"
kind = "gpio"
pin_factory = "mock"

[[sensor]]
id = "tank-level"
driver = "fatal"
bus = "gpio"
fatal_file = "{fatal_file}"
interval = "200ms"
"""))
    proc = subprocess.Popen([sys.executable, "-m", "tests.fatal_driver", "--config", str(path), "run"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        sub.wait_for(lambda m: any(r.get("sensor") == "tank-level" for x in m if x.kind == "telemetry"
                                   for r in x.payload["records"]), 20, "the tank level read")
        fatal_file.touch()
        killed = time.monotonic()
        _, err = proc.communicate(timeout=30)
        ended = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 70, err
    assert ended < 5, f"ended {ended:.1f} s after the thread died"
    assert f"the bus gpio thread ended (ThreadKiller: {fatal_file} appeared); stopping" in err
    assert "Traceback" in err, "the bus thread's log says where it died"
    status = sub.wait_for(lambda m: any(x.kind == "status" and x.payload["state"] == "offline" for x in m), 10,
                          "offline: the uplink was stopped cleanly")
    assert status
