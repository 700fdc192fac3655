"""The buzzer through the real agent: a simulated pressure dip, a real mosquitto, the control socket, a button."""

from __future__ import annotations

import dataclasses
import importlib.util
import queue
import signal
import subprocess
import threading

import pytest

from edge.agent import Agent
from edge.config import load_config
from edge.notify import Notifier
from edge.outputs import OutputError
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, config_text, linli
from tests.mqtt_helpers import wait_until

RULE_AND_BUZZER = """
[[rule]]
id = "low"
sensor = "pump-pressure"
quantity = "pressure"
kind = "threshold"
below = 0.10
clear_above = 0.12
severity = "critical"
latch = true

[[output]]
id = "pump-room-buzzer"
kind = "buzzer"
bus = "gpio"
pin = 18
on = ["pump-pressure/*"]
ack_button = 27
"""


@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


def write_config(tmp_path, port, serial_port, extra=RULE_AND_BUZZER):
    path = tmp_path / "edge.toml"
    path.write_text(config_text(port=port, outbox=tmp_path / "outbox.db", serial_port=serial_port, gpio=True,
                                extra_sensors=extra))
    return path


def alarm_states(sub):
    return [m.payload["state"] for m in sub.messages("alarm") if m.payload["alarm"] == "pump-pressure/low"]


def buzzer(agent):
    return agent.outputs.outputs[0]


def test_the_buzzer_follows_raise_acknowledge_clear_raise_and_its_button(tmp_path, broker, transmitter,
                                                                         subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    path = write_config(tmp_path, broker.port, transmitter.port)
    agent = Agent(load_config(path))
    agent.start()
    pin = buzzer(agent).device.pin
    try:
        assert pin.state is False and pin.function == "output", "off in a known state from the start"
        transmitter.set_profile(0.05)
        sub.wait_for(lambda _m: alarm_states(sub) == ["raised"], 10, "the low-pressure alarm")
        wait_until(lambda: pin.state is True, 5, "the buzzer on")

        ack = linli("--config", str(path), "alarm", "ack", "pump-pressure/low",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = ack.communicate(timeout=30)
        assert ack.returncode == 0, err.decode()
        assert b"acknowledged" in out
        wait_until(lambda: pin.state is False, 5, "the buzzer silenced by linli alarm ack")

        transmitter.set_profile(0.35)
        sub.wait_for(lambda _m: alarm_states(sub) == ["raised", "acknowledged", "cleared"], 10, "the clear")
        assert pin.state is False
        transmitter.set_profile(0.05)
        sub.wait_for(lambda _m: alarm_states(sub)[-1:] == ["raised"] and len(alarm_states(sub)) == 4, 10,
                     "the alarm raised again")
        wait_until(lambda: pin.state is True, 5, "the buzzer on again")

        transmitter.set_profile(0.35)            # latched: the pressure is back, the buzzer keeps sounding
        seen = len(sub.messages("telemetry"))
        sub.wait_for(lambda _m: len(sub.messages("telemetry")) > seen + 3, 10, "good readings again")
        assert pin.state is True and alarm_states(sub)[-1] == "raised"

        button = buzzer(agent).button.pin
        button.drive_low()                      # pressed, on this thread as gpiozero's would
        button.drive_high()
        sub.wait_for(lambda _m: alarm_states(sub)[-2:] == ["acknowledged", "cleared"], 10,
                     "the button's acknowledgement at the broker")
        assert pin.state is False
        assert agent.health()["outputs"] == [{"id": "pump-room-buzzer", "kind": "buzzer", "pattern": "off",
                                              "sounding": []}]
    finally:
        agent.stop(drain_timeout=5)
    assert pin.state is False and pin.function == "input", "off and released at exit"
    assert [s.state for s in pin.states] == [False, True, False, True, False]
    assert alarm_states(sub) == ["raised", "acknowledged", "cleared", "raised", "acknowledged", "cleared"]


class StopWhen(Notifier):
    """A systemd notifier stand-in that sends the agent SIGTERM (or fails) once ``ready`` has been told."""

    def __init__(self, action):
        super().__init__({})
        self.action = action

    def status(self, text: str) -> bool:
        self.action()
        return True


def test_after_a_restart_the_buzzer_sounds_again_and_sigterm_or_a_crash_silences_it(
        tmp_path, broker, transmitter, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = load_config(write_config(tmp_path, broker.port, transmitter.port))
    first = Agent(config)
    first.start()
    try:
        transmitter.set_profile(0.05)
        sub.wait_for(lambda _m: alarm_states(sub) == ["raised"], 10, "the low-pressure alarm")
        wait_until(lambda: buzzer(first).device.pin.state is True, 5, "the buzzer on")
    finally:
        first.stop(drain_timeout=5)
    assert buzzer(first).device is None

    pins = []

    def sigterm():
        pins.append(buzzer(second).device.pin)
        signal.raise_signal(signal.SIGTERM)

    def crash():
        pins.append(buzzer(third).device.pin)
        raise RuntimeError("a bug in the main loop")

    second = Agent(config, notifier=StopWhen(sigterm))
    third = Agent(config, notifier=StopWhen(crash))
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        assert second.run_forever() == 0
        with pytest.raises(RuntimeError, match="a bug in the main loop"):
            third.run_forever()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    for pin in pins:
        # Off when opened, on as soon as the rules were restored (before the main loop ran), off at the end.
        assert [s.state for s in pin.states] == [False, True, False]
    assert len(pins) == 2
    assert buzzer(second).device is None and buzzer(third).device is None and third.outbox is None
    assert alarm_states(sub) == ["raised"], "restored, never raised twice"


def test_a_reload_moving_the_buzzer_switches_the_old_pin_off_and_the_new_one_on(tmp_path, broker, transmitter,
                                                                                  subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = load_config(write_config(tmp_path, broker.port, transmitter.port))
    agent = Agent(config)
    agent.start()
    try:
        old = buzzer(agent).device.pin
        transmitter.set_profile(0.05)
        sub.wait_for(lambda _m: alarm_states(sub) == ["raised"], 10, "the low-pressure alarm")
        wait_until(lambda: old.state is True, 5, "the buzzer on")
        moved = dataclasses.replace(config.outputs[0], pin=22)
        agent.reload(dataclasses.replace(config, outputs=(moved,)))
        new = buzzer(agent).device.pin
        assert old.state is False, "the old pin is off"
        assert new.state is True, "the new pin sounds for the alarm raised before the reload"
        assert new is not old
    finally:
        agent.stop(drain_timeout=5)
    assert new.state is False


def test_a_reload_whose_outputs_cannot_open_keeps_the_previous_ones_sounding(tmp_path, broker, transmitter,
                                                                              subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = load_config(write_config(tmp_path, broker.port, transmitter.port))
    agent = Agent(config)
    agent.start()
    try:
        transmitter.set_profile(0.05)
        sub.wait_for(lambda _m: alarm_states(sub) == ["raised"], 10, "the low-pressure alarm")
        wait_until(lambda: buzzer(agent).device.pin.state is True, 5, "the buzzer on")
        impossible = dataclasses.replace(config.outputs[0], pin=99)   # no such GPIO: the new outputs fail
        agent.reload(dataclasses.replace(config, outputs=(impossible,)))
        kept = buzzer(agent).device.pin
        assert kept.info.name == "GPIO18" and kept.state is True, "the previous buzzer sounds on"
    finally:
        agent.stop(drain_timeout=5)
    assert kept.state is False


TWO_RULES_AND_BUZZER = RULE_AND_BUZZER.replace("[[output]]", """[[rule]]
id = "high"
sensor = "pump-pressure"
quantity = "pressure"
kind = "threshold"
above = 0.30
severity = "warning"

[[output]]""")


def test_the_button_acknowledges_what_sounded_when_it_was_pressed(tmp_path, broker, transmitter, subscriber_factory):
    # A critical alarm already on its way to the core when the button is pressed for a warning must still sound.
    from drivers.base import Measurement
    from edge.model import reading_record

    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    config = load_config(write_config(tmp_path, broker.port, transmitter.port, extra=TWO_RULES_AND_BUZZER))
    agent = Agent(config)
    agent.start()
    release = threading.Event()
    try:
        sub.wait_for(lambda m: any(x.kind == "alarm" and x.payload["alarm"] == "pump-pressure/high" for x in m),
                     10, "the warning at 0.35 MPa")
        wait_until(lambda: buzzer(agent).sounding() == ["pump-pressure/high"], 5, "the buzzer on for the warning")
        agent.core.inbox.put(("call", lambda _rules: release.wait(10) and [], queue.Queue()))  # the core is busy
        low = reading_record("pump-pressure", Measurement("pressure", 0.05, "MPa"), agent.clock.stamp())
        assert agent.core.submit_reading(low)                  # queued before the press...
        button = buzzer(agent).button.pin
        button.drive_low()                                     # ...and the press, meant for the warning
        button.drive_high()
        release.set()
        sub.wait_for(lambda _m: "raised" in alarm_states(sub), 10, "the critical alarm at the broker")
        wait_until(lambda: "pump-pressure/low" in buzzer(agent).sounding(), 5, "the buzzer on for the critical alarm")
        assert "acknowledged" not in alarm_states(sub)
        assert buzzer(agent).device.pin.state is True
    finally:
        release.set()
        agent.stop(drain_timeout=5)


@pytest.mark.skipif(importlib.util.find_spec("lgpio") is not None, reason="lgpio may work on this machine")
def test_an_output_without_gpio_stops_linli_run_with_a_clear_message(tmp_path, broker, transmitter):
    path = write_config(tmp_path, broker.port, transmitter.port, extra=RULE_AND_BUZZER.replace(
        'bus = "gpio"\npin = 18', 'bus = "header"\npin = 18') + '\n[[bus]]\nname = "header"\nkind = "gpio"\n'
        'pin_factory = "lgpio"\n')
    with pytest.raises(OutputError):
        Agent(load_config(path)).start()
    proc = linli("--config", str(path), "run", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 69, text
    assert 'output "pump-room-buzzer" (buzzer on GPIO 18 of bus "header") cannot be opened' in text
    assert "Traceback" not in text
    assert not (tmp_path / "outbox.db").exists(), "nothing else was started"
