"""Local alarm outputs on gpiozero's MockFactory: pin states through an alarm's life, patterns, buttons, config."""

from __future__ import annotations

import importlib.util
import statistics
import textwrap
from pathlib import Path

import pytest

from edge.config import OUTPUT_KINDS, load_config
from edge.errors import ConfigError
from edge.outputs import OFF, PATTERNS, STEADY, Blink, OutputError, Outputs, pattern_for
from edge.rules import SEVERITIES, RuleConfig, RuleEngine
from tests.mqtt_helpers import wait_until

GATEWAY = """
[gateway]
id = "gw-0042"
grid = "shimen2/xinfukangli/b07"

[[bus]]
name = "rs485-1"
kind = "serial"
port = "/dev/null"

[[bus]]
name = "gpio"
kind = "gpio"
pin_factory = "mock"

[[sensor]]
id = "pump-pressure"
driver = "modbus_pressure"
bus = "rs485-1"
address = 1

[[sensor]]
id = "flat-302-water"
driver = "pulse_meter"
bus = "gpio"
pin = 17
litres_per_pulse = 10.0

[[rule]]
id = "low"
sensor = "pump-pressure"
quantity = "pressure"
kind = "threshold"
severity = "critical"
below = 0.10
clear_above = 0.12

[[rule]]
id = "high"
sensor = "pump-pressure"
quantity = "pressure"
kind = "threshold"
severity = "warning"
above = 1.0
clear_below = 0.9

[[rule]]
id = "no-water"
sensor = "flat-302-water"
quantity = "volume"
kind = "inactivity"
severity = "critical"
min_increase = 0.01
window = "12h"
"""

BUZZER = """
[[output]]
id = "pump-room-buzzer"
kind = "buzzer"
bus = "gpio"
pin = 18
on = ["pump-pressure/*"]
ack_button = 27
"""


def load(tmp_path: Path, outputs: str, rules: str = ""):
    path = tmp_path / "edge.toml"
    path.write_text(GATEWAY + textwrap.dedent(rules) + textwrap.dedent(outputs), encoding="utf-8")
    return load_config(path)


class Rig:
    """A real rules engine whose transitions are offered to real outputs, as the core does."""

    def __init__(self, config):
        self.engine = RuleEngine(config.rules)
        self.pressed: list = []
        self.outputs = Outputs(config.outputs, config.buses, self.pressed.append)
        self.outputs.open()
        self.now = 0

    def pressure(self, value: float) -> list[dict]:
        self.now += 1000
        return self.offer(self.engine.evaluate({"sensor": "pump-pressure", "quantity": "pressure", "value": value,
                                                "quality": "good", "ts": self.now}))

    def acknowledge(self, alarm: str) -> list[dict]:
        self.now += 1000
        return self.offer(self.engine.acknowledge(alarm, self.now))

    def offer(self, transitions: list[dict]) -> list[str]:
        for transition in transitions:
            self.outputs.offer(transition)
        return [t["state"] for t in transitions]

    def output(self, index: int = 0):
        return self.outputs.outputs[index]

    def pin(self, index: int = 0):
        return self.output(index).device.pin

    def close(self):
        self.outputs.close()


@pytest.fixture
def rig_factory():
    made: list[Rig] = []

    def make(config) -> Rig:
        rig = Rig(config)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


# --- patterns -------------------------------------------------------------------------------------------
def test_every_kind_has_a_pattern_for_every_severity_and_a_relay_never_blinks():
    assert set(PATTERNS) == set(OUTPUT_KINDS)
    for kind, table in PATTERNS.items():
        assert set(table) == set(SEVERITIES), kind
    assert set(PATTERNS["relay"].values()) == {STEADY}
    assert PATTERNS["buzzer"]["critical"] == STEADY and isinstance(PATTERNS["led"]["critical"], Blink)


def test_the_most_severe_alarm_decides_and_those_below_the_floor_do_not_count():
    assert pattern_for("led", ["warning"], "warning") == Blink(1.0, 1.0)
    assert pattern_for("led", ["warning", "critical", "info"], "warning") == Blink(0.25, 0.25)
    assert pattern_for("buzzer", ["info", "info"], "warning") == OFF
    assert pattern_for("buzzer", ["info"], "info") == Blink(0.1, 4.9)
    assert pattern_for("buzzer", ["warning"], "critical") == OFF
    assert pattern_for("relay", [], "info") == OFF


# --- an alarm's life on the pin ---------------------------------------------------------------------------
def test_the_buzzer_pin_follows_raise_acknowledge_clear_and_raise_again(tmp_path, rig_factory):
    rig = rig_factory(load(tmp_path, BUZZER))
    pin = rig.pin()
    assert pin.state is False and pin.function == "output", "off from the moment it is opened"
    assert rig.pressure(0.35) == [] and pin.state is False
    assert rig.pressure(0.05) == ["raised"]
    assert pin.state is True and rig.output().pattern == STEADY
    assert rig.acknowledge("pump-pressure/low") == ["acknowledged"]
    assert pin.state is False, "acknowledged: silenced although the pressure is still low"
    assert rig.pressure(0.04) == [] and pin.state is False
    assert rig.pressure(0.35) == ["cleared"] and pin.state is False
    assert rig.pressure(0.05) == ["raised"] and pin.state is True, "raised again: on again"
    assert rig.pressure(0.35) == ["cleared"] and pin.state is False, "cleared unacknowledged: off"
    assert [s.state for s in pin.states] == [False, True, False, True, False]


def test_a_latched_alarm_keeps_sounding_after_its_condition_went_until_acknowledged(tmp_path, rig_factory):
    latched = GATEWAY.replace('severity = "critical"\nbelow = 0.10',
                              'severity = "critical"\nlatch = true\nbelow = 0.10')
    path = tmp_path / "latched.toml"
    path.write_text(latched + BUZZER, encoding="utf-8")
    config = load_config(path)
    assert config.rules[0].latch
    rig = rig_factory(config)
    assert rig.pressure(0.05) == ["raised"] and rig.pin().state is True
    assert rig.pressure(0.35) == [], "latched: the condition went, the alarm stays raised"
    assert rig.pin().state is True
    assert rig.acknowledge("pump-pressure/low") == ["acknowledged", "cleared"]
    assert rig.pin().state is False


def test_an_active_low_relay_module_is_driven_high_when_off(tmp_path, rig_factory):
    rig = rig_factory(load(tmp_path, """
        [[output]]
        id = "beacon"
        kind = "relay"
        bus = "gpio"
        pin = 23
        active_high = false
        on = ["pump-pressure/high"]
        """))
    pin = rig.pin()
    assert pin.state is True, "an active-low relay is off with its input high"
    assert rig.pressure(1.2) == ["raised"]
    assert pin.state is False and rig.output().pattern == STEADY, "a relay is steady for a warning too"
    assert rig.pressure(0.5) == ["cleared"] and pin.state is True


def test_it_follows_only_the_alarms_its_patterns_match(tmp_path, rig_factory):
    rig = rig_factory(load(tmp_path, """
        [[output]]
        id = "low-only"
        kind = "buzzer"
        bus = "gpio"
        pin = 18
        on = ["pump-pressure/low"]
        """))
    assert rig.pressure(1.2) == ["raised"]
    assert rig.pin().state is False and rig.output().sounding() == []
    rig.offer([{"alarm": "flat-302-water/no-water", "state": "raised", "severity": "critical"}])
    assert rig.pin().state is False
    assert rig.pressure(0.05) == ["raised", "cleared"]      # low raised, high cleared
    assert rig.pin().state is True and rig.output().sounding() == ["pump-pressure/low"]


def test_the_led_blinks_by_the_most_severe_unacknowledged_alarm(tmp_path, rig_factory):
    rig = rig_factory(load(tmp_path, """
        [[output]]
        id = "panel-led"
        kind = "led"
        bus = "gpio"
        pin = 24
        on = ["*"]
        """))
    led = rig.output()
    assert rig.pressure(1.2) == ["raised"] and led.pattern == Blink(1.0, 1.0)
    rig.offer([{"alarm": "flat-302-water/no-water", "state": "raised", "severity": "critical"}])
    assert led.pattern == Blink(0.25, 0.25)
    rig.offer([{"alarm": "flat-302-water/no-water", "state": "acknowledged", "severity": "critical"}])
    assert led.pattern == Blink(1.0, 1.0), "the critical one is acknowledged: back to the warning's slow blink"
    rig.offer([{"alarm": "flat-302-water/no-water", "state": "raised", "severity": "critical"}])
    pin = rig.pin()
    pin.clear_states()
    # Measured on the pin: gpiozero's blink thread toggles it, the core is not involved.
    wait_until(lambda: len(pin.states) >= 9, 5, "four fast blinks")
    # states[0] is the state when cleared and states[1] ends a period that began before: both partial.
    on_times = [s.timestamp for s in pin.states[2:] if s.state is False]
    off_times = [s.timestamp for s in pin.states[2:] if s.state is True]
    assert statistics.median(on_times) == pytest.approx(0.25, abs=0.1)
    assert statistics.median(off_times) == pytest.approx(0.25, abs=0.1)


def test_a_warning_makes_the_buzzer_beep_half_a_second_in_two(tmp_path, rig_factory):
    rig = rig_factory(load(tmp_path, BUZZER))
    pin = rig.pin()
    assert rig.pressure(1.2) == ["raised"] and rig.output().pattern == Blink(0.5, 1.5)
    wait_until(lambda: len(pin.states) >= 4, 5, "a beep, a pause and the next beep")
    beep, pause = pin.states[2].timestamp, pin.states[3].timestamp
    assert [s.state for s in pin.states[:4]] == [False, True, False, True]
    assert beep == pytest.approx(0.5, abs=0.2) and pause == pytest.approx(1.5, abs=0.3)
    assert rig.pressure(0.5) == ["cleared"]
    assert pin.state is False and rig.output().pattern == OFF


def test_info_alarms_are_silent_unless_the_output_asks_for_them(tmp_path, rig_factory):
    away = {"alarm": "gateway/away", "state": "raised", "severity": "info"}
    rig = rig_factory(load(tmp_path, """
        [[output]]
        id = "panel-led"
        kind = "led"
        bus = "gpio"
        pin = 24
        on = ["*"]

        [[output]]
        id = "away-led"
        kind = "led"
        bus = "gpio"
        pin = 25
        on = ["gateway/away"]
        min_severity = "info"
        """))
    rig.offer([away])
    assert rig.pin(0).state is False and rig.output(0).pattern == OFF
    assert rig.pin(1).state is True and rig.output(1).pattern == STEADY
    rig.offer([{**away, "state": "cleared"}])
    assert rig.pin(1).state is False


def test_every_output_sounds_for_the_test_alarm_whatever_its_patterns_and_floor(tmp_path, rig_factory):
    rig = rig_factory(load(tmp_path, """
        [[output]]
        id = "critical-only"
        kind = "relay"
        bus = "gpio"
        pin = 18
        on = ["pump-pressure/low"]
        min_severity = "critical"
        """))
    test = {"alarm": "gateway/test", "severity": "info", "value": None, "limit": None}
    rig.offer([{**test, "state": "raised"}])
    assert rig.pin().state is True and rig.output().sounding() == ["gateway/test"]
    rig.offer([{**test, "state": "cleared"}])
    assert rig.pin().state is False and rig.output().sounding() == []
    rig.offer([{"alarm": "gateway/away", "state": "raised", "severity": "info"}])
    assert rig.pin().state is False, "any other info alarm stays below its floor"
    rig.outputs.restore([{"alarm": "gateway/test", "severity": "info", "acknowledged": False}])
    assert rig.output().sounding() == ["gateway/test"], "after a restart too"


# --- restart, button, open and close ---------------------------------------------------------------------
def test_raised_lists_the_raised_alarms_with_their_acknowledgement():
    engine = RuleEngine([RuleConfig("low", "pump-pressure", "pressure", "threshold", "critical",
                                    params={"below": 0.1}),
                         RuleConfig("high", "pump-pressure", "pressure", "threshold", "warning",
                                    params={"above": 1.0})])
    assert engine.raised() == []
    engine.evaluate({"sensor": "pump-pressure", "quantity": "pressure", "value": 0.05, "quality": "good", "ts": 0})
    engine.acknowledge("pump-pressure/low", 10)
    engine.set_away(10_000, 20)
    assert engine.raised() == [
        {"alarm": "pump-pressure/low", "severity": "critical", "acknowledged": True},
        {"alarm": "gateway/away", "severity": "info", "acknowledged": False},
    ]


def test_after_a_restart_the_outputs_come_back_on_for_restored_alarms(tmp_path, rig_factory):
    config = load(tmp_path, BUZZER + """
        [[output]]
        id = "panel-led"
        kind = "led"
        bus = "gpio"
        pin = 24
        on = ["pump-pressure/high"]
        """)
    before = rig_factory(config)
    assert before.pressure(0.05) == ["raised"]
    before.engine.evaluate({"sensor": "pump-pressure", "quantity": "pressure", "value": 0.05, "quality": "good",
                            "ts": 5000})
    saved = before.engine.snapshot()
    before.close()
    assert before.outputs.outputs[0].device is None

    engine = RuleEngine(config.rules)
    engine.restore(saved)
    after = Outputs(config.outputs, config.buses, lambda _output: None)
    after.open()
    try:
        assert after.outputs[0].device.pin.state is False, "off until it knows better"
        after.restore(engine.raised())
        assert after.outputs[0].device.pin.state is True, "the restored low-pressure alarm sounds again"
        assert after.outputs[1].device.pin.state is False, "the LED follows no raised alarm"
        for transition in engine.acknowledge("pump-pressure/low", 6000):
            after.offer(transition)
        assert after.outputs[0].device.pin.state is False
    finally:
        after.close()


def test_an_acknowledged_alarm_stays_silent_after_a_restart(tmp_path, rig_factory):
    config = load(tmp_path, BUZZER)
    rig = rig_factory(config)
    rig.pressure(0.05)
    rig.acknowledge("pump-pressure/low")
    rig.output().restore(rig.engine.raised())
    assert rig.pin().state is False and rig.engine.raised()[0]["acknowledged"] is True


def test_the_button_reports_the_output_that_knows_what_it_sounds_for(tmp_path, rig_factory):
    rig = rig_factory(load(tmp_path, BUZZER))
    button = rig.output().button.pin
    assert button.state is True, "pulled up: a press closes it to ground"
    rig.pressure(0.05)
    rig.pressure(1.2)        # low cleared, high raised
    button.drive_low()
    button.drive_high()
    button.drive_low()
    assert rig.pressed == [rig.output(), rig.output()], "one call per press, on press (not on release)"
    assert rig.output().sounding() == ["pump-pressure/high"]


def test_close_switches_off_and_releases_the_pins(tmp_path, rig_factory):
    rig = rig_factory(load(tmp_path, BUZZER))
    pin, button = rig.pin(), rig.output().button.pin
    rig.pressure(1.2)
    wait_until(lambda: pin.state, 5, "the warning's first beep")
    rig.close()
    assert pin.state is False and pin.states[-1].state is False
    assert pin.function == "input" and button.when_changed is None
    count = len(pin.states)
    rig.close()              # twice is harmless
    rig.offer([{"alarm": "pump-pressure/low", "state": "raised", "severity": "critical"}])
    assert len(pin.states) == count, "a closed output ignores transitions"


def test_an_output_that_cannot_open_is_a_clear_error_and_releases_the_others(tmp_path):
    if importlib.util.find_spec("lgpio") is not None:
        pytest.skip("this machine has lgpio: the factory may work here")
    config = load(tmp_path, BUZZER + """
        [[bus]]
        name = "header"
        kind = "gpio"
        pin_factory = "lgpio"

        [[output]]
        id = "beacon"
        kind = "relay"
        bus = "header"
        pin = 23
        on = ["pump-pressure/low"]
        """)
    outputs = Outputs(config.outputs, config.buses, lambda _output: None)
    with pytest.raises(OutputError) as caught:
        outputs.open()
    message = str(caught.value)
    assert message.startswith('output "beacon" (relay on GPIO 23 of bus "header") cannot be opened: ')
    assert "lgpio" in message and 'pin_factory = "mock"' in message
    assert caught.value.exit_code == 69
    buzzer = outputs.outputs[0]
    assert buzzer.device is None and buzzer.button is None, "the buzzer opened first was released again"


# --- config -----------------------------------------------------------------------------------------------
def problems(tmp_path: Path, outputs: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, outputs)
    return caught.value.problems


def test_a_valid_output_becomes_its_config(tmp_path):
    config = load(tmp_path, BUZZER)
    (output,) = config.outputs
    assert (output.id, output.kind, output.bus, output.pin, output.on) == (
        "pump-room-buzzer", "buzzer", "gpio", 18, ("pump-pressure/*",))
    assert (output.active_high, output.min_severity, output.ack_button, output.ack_button_pull) == (
        True, "warning", 27, "up")


@pytest.mark.parametrize("text, expected", [
    ('[[output]]\nkind = "buzzer"\nbus = "gpio"\n',
     ["output[0].id: is required", "output[0].pin: is required", "output[0].on: is required"]),
    ('[[output]]\nid = "b"\nkind = "horn"\nbus = "gpio"\npin = 18\non = ["*"]\n',
     ['output[0].kind: expected one of "buzzer", "led", "relay", got "horn"']),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "rs485-1"\npin = 18\non = ["*"]\n',
     ['output[0].bus: an output needs a gpio bus, "rs485-1" is serial']),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "gpoi"\npin = 18\non = ["*"]\n',
     ['output[0].bus: no [[bus]] named "gpoi"; did you mean "gpio"?']),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "gpio"\npin = 28\non = ["*"]\nbeep = true\n',
     ["output[0].pin: must be at most 27, got 28", "output[0].beep: unknown key"]),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "gpio"\npin = 17\non = ["*"]\n',
     ['output[0].pin: GPIO 17 of bus "gpio" is already used by sensor[1].pin']),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "gpio"\npin = 18\non = ["*"]\nack_button = 18\n',
     ['output[0].ack_button: GPIO 18 of bus "gpio" is already used by output[0].pin']),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "gpio"\npin = 18\non = ["*"]\n'
     '[[output]]\nid = "b"\nkind = "led"\nbus = "gpio"\npin = 22\non = ["*"]\nack_button = 18\n',
     ['output[1].id: "b" is already used by output[0]',
      'output[1].ack_button: GPIO 18 of bus "gpio" is already used by output[0].pin']),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "gpio"\npin = 18\non = "pump-pressure/*"\n',
     ['output[0].on: expected a list, got "pump-pressure/*"']),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "gpio"\npin = 18\non = []\n',
     ['output[0].on: expected a list of alarm patterns like ["pump-pressure/*"], got an empty list']),
    ('[[output]]\nid = "b"\nkind = "buzzer"\nbus = "gpio"\npin = 18\non = ["pump-presure/*", 3, "pump-pressure/low"]\n',
     ['output[0].on[0]: "pump-presure/*" matches no alarm; the rules make "gateway/away", "pump-pressure/low", '
      '"pump-pressure/high", "flat-302-water/no-water"',
      "output[0].on[1]: expected an alarm pattern like \"pump-pressure/*\", got 3"]),
    ('[[output]]\nid = "b"\nkind = "led"\nbus = "gpio"\npin = 18\non = ["gateway/*"]\n',
     ['output[0].on: every alarm it follows is less severe than "warning", so it would never sound: '
      '"gateway/away" (info)']),
    ('[[output]]\nid = "b"\nkind = "led"\nbus = "gpio"\npin = 18\non = ["pump-pressure/*"]\nmin_severity = "fatal"\n'
     'ack_button_pull = "down"\n',
     ['output[0].min_severity: expected one of "info", "warning", "critical", got "fatal"',
      "output[0].ack_button_pull: is only used with output[0].ack_button"]),
    ('[[output]]\nid = "b"\nkind = "led"\nbus = "gpio"\npin = 18\non = ["pump-pressure/high"]\n'
     'min_severity = "critical"\n',
     ['output[0].min_severity: every alarm it follows is less severe than "critical", so it would never sound: '
      '"pump-pressure/high" (warning)']),
], ids=["missing", "kind", "serial bus", "bus typo", "pin range and unknown key", "sensor's pin",
        "button on its own pin", "second output", "on not a list", "on empty", "patterns", "info only",
        "severity and pull", "below the floor"])
def test_config_problems_name_their_key_paths(tmp_path, text, expected):
    assert problems(tmp_path, text) == expected


def test_two_sensors_on_one_pin_are_refused_too(tmp_path):
    text = '[[sensor]]\nid = "second-meter"\ndriver = "pulse_meter"\nbus = "gpio"\npin = 17\nlitres_per_pulse = 1.0\n'
    assert problems(tmp_path, text) == ['sensor[2].pin: GPIO 17 of bus "gpio" is already used by sensor[1].pin']


def test_one_pin_reached_through_two_gpio_buses_is_still_one_pin(tmp_path):
    # Every gpio bus drives the same header: a second bus name does not make GPIO 17 free again.
    text = ('[[bus]]\nname = "header"\nkind = "gpio"\npin_factory = "mock"\n'
            '[[output]]\nid = "b"\nkind = "buzzer"\nbus = "header"\npin = 17\non = ["pump-pressure/*"]\n')
    assert problems(tmp_path, text) == ['output[0].pin: GPIO 17 of bus "header" is already used by sensor[1].pin']
