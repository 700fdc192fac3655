"""pulse_meter on gpiozero's MockFactory: counting, debouncing, restarts, the simulator."""

from __future__ import annotations

import doctest
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import drivers.pulse_meter
import edge.simulate.pulse
from drivers.errors import DriverError, TransportError
from drivers.options import validate_options
from drivers.pulse_meter import PulseMeter
from drivers.registry import driver_class
from buffer.outbox import Outbox
from drivers.transports.gpio import GpioBus
from edge.agent import Agent
from edge.config import load_config
from edge.simulate.broker import free_port
from edge.simulate.pulse import PulseMeterSim, morning_use
from tests.mqtt_helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent

PIN = 17


@pytest.fixture
def bus():
    with GpioBus("pins", {"pin_factory": "mock"}) as gpio:
        yield gpio


def meter(bus, sensor_id: str = "kitchen-water", **options) -> PulseMeter:
    values, problems = validate_options(PulseMeter.options, {"pin": PIN, "litres_per_pulse": 10.0, **options})
    assert problems == []
    return PulseMeter(sensor_id, values, bus)


def pulse(pin, pull: str = "up") -> None:
    """One clean closing and opening of the reed switch."""
    if pull == "up":
        pin.drive_low()
        pin.drive_high()
    else:
        pin.drive_high()
        pin.drive_low()


def test_registry_names_this_class():
    assert driver_class("pulse_meter") is PulseMeter
    assert (PulseMeter.bus_kind, PulseMeter.quantities) == ("gpio", ("volume",))


# --- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        ({}, [("pin", "is required"), ("litres_per_pulse", "is required")]),
        ({"pin": 28, "litres_per_pulse": 1}, [("pin", "must be at most 27, got 28")]),
        ({"pin": -1, "litres_per_pulse": 1}, [("pin", "must be at least 0, got -1")]),
        ({"pin": "GPIO17", "litres_per_pulse": 1}, [("pin", 'expected an integer, got "GPIO17"')]),
        ({"pin": 17, "litres_per_pulse": 0}, [("litres_per_pulse", "must be greater than 0, got 0")]),
        ({"pin": 17, "litres_per_pulse": -2.5}, [("litres_per_pulse", "must be greater than 0, got -2.5")]),
        ({"pin": 17, "litres_per_pulse": 1, "debounce": "2s"}, [("debounce", 'must be at most 1s, got "2s"')]),
        ({"pin": 17, "litres_per_pulse": 1, "debounce": 20},
         [("debounce", 'expected a duration like "30s" or "5m", got 20')]),
        ({"pin": 17, "litres_per_pulse": 1, "pull": "left"}, [("pull", 'expected one of "up", "down", got "left"')]),
        ({"pin": 17, "litres_per_pulse": 1, "start_m3": -1}, [("start_m3", "must be at least 0, got -1")]),
        ({"pin": 17, "litres_per_pulse": 1, "gpio": 4}, [("gpio", "unknown key")]),
    ],
)
def test_option_problems(raw, problems):
    assert validate_options(PulseMeter.options, raw)[1] == problems


def test_defaults():
    assert validate_options(PulseMeter.options, {"pin": 4, "litres_per_pulse": 1}) == (
        {"pin": 4, "litres_per_pulse": 1.0, "debounce": 0.02, "pull": "up", "start_m3": 0.0}, [])


# --- counting -------------------------------------------------------------------------------------

def test_each_pulse_adds_litres_per_pulse(bus):
    with meter(bus, start_m3=123.456, debounce="0ms") as water:
        pin = bus.factory.pin(PIN)
        for _ in range(25):
            pulse(pin)
        [reading] = water.read()
    assert reading.quantity == "volume"
    assert reading.unit == "m3"
    assert reading.value == 123.706  # 123.456 m3 + 25 × 10 L
    assert reading.state == {"pulses": 25, "start_m3": 123.456, "litres_per_pulse": 10.0}
    assert reading.quality == "good"


def test_fractional_litres_add_up_exactly(bus):
    with meter(bus, litres_per_pulse=0.1, debounce="0ms") as water:
        pin = bus.factory.pin(PIN)
        for _ in range(3):
            pulse(pin)
        assert water.read()[0].value == 0.0003


def test_pull_down_counts_rising_edges(bus):
    with meter(bus, pull="down", debounce="0ms") as water:
        pin = bus.factory.pin(PIN)
        assert pin.pull == "down"
        for _ in range(4):
            pulse(pin, pull="down")
        assert water.pulses == 4


def test_opening_the_switch_is_not_a_pulse(bus):
    with meter(bus, debounce="0ms") as water:
        pin = bus.factory.pin(PIN)
        pin.drive_low()
        assert water.pulses == 1
        pin.drive_high()
        assert water.pulses == 1


CHATTER = 5  # extra bounces on each closing and opening


def bouncy_pulse(pin) -> None:
    pin.drive_low()
    for _ in range(CHATTER):
        pin.drive_high()
        pin.drive_low()
    pin.drive_high()
    for _ in range(CHATTER):
        pin.drive_low()
        pin.drive_high()


def test_without_debounce_chatter_counts(bus):
    # The control case: the bouncing switch below really does produce extra edges.
    with meter(bus, debounce="0ms") as water:
        bouncy_pulse(bus.factory.pin(PIN))
        assert water.pulses == 1 + 2 * CHATTER


def test_debounce_suppresses_chatter(bus):
    # A long debounce, so a test thread paused by a loaded machine mid-burst still stays inside it.
    debounce = 1.0
    with meter(bus, debounce="1s") as water:
        pin = bus.factory.pin(PIN)
        bouncy_pulse(pin)  # all edges within microseconds, far inside the debounce time
        assert water.pulses == 1
        # The next pulse comes after the switch has rested longer than the debounce time.
        time.sleep(debounce * 1.5)
        bouncy_pulse(pin)
        assert water.pulses == 2


def test_restore_state_continues_the_total(bus):
    with meter(bus, start_m3=5.0, debounce="0ms") as first:
        pin = bus.factory.pin(PIN)
        for _ in range(7):
            pulse(pin)
        saved = first.read()[0].state
    second = meter(bus, start_m3=5.0, debounce="0ms")
    second.restore_state(saved)
    with second:
        for _ in range(3):
            pulse(pin)
        [reading] = second.read()
    assert reading.state["pulses"] == 10
    assert reading.value == 5.1


def test_restore_state_accepts_a_bare_count(bus):
    water = meter(bus)
    water.restore_state({"pulses": 42})
    with water:
        assert water.read()[0].value == 0.42


@pytest.mark.parametrize("changed", [{"start_m3": 6.0}, {"litres_per_pulse": 1.0}])
def test_restore_state_is_dropped_when_the_meter_was_rebased(bus, changed, caplog):
    saved = {"pulses": 7, "start_m3": 5.0, "litres_per_pulse": 10.0}
    water = meter(bus, **{"start_m3": 5.0, "litres_per_pulse": 10.0, **changed})
    water.restore_state(saved)
    assert water.pulses == 0
    assert "counting again from" in caplog.text


@pytest.mark.parametrize("state", [{}, {"pulses": -1}, {"pulses": "7"}, {"pulses": 7.5}, {"pulses": True}])
def test_restore_state_ignores_garbage(bus, state):
    water = meter(bus)
    water.restore_state(state)
    assert water.pulses == 0


def test_close_keeps_the_count_and_releases_the_pin(bus):
    water = meter(bus, debounce="0ms")
    water.open()
    pin = bus.factory.pin(PIN)
    pulse(pin)
    water.close()
    water.close()
    pulse(pin)  # nobody listens while closed
    assert water.pulses == 1
    other = meter(bus, sensor_id="other", debounce="0ms")
    with other:  # the pin is free for another device now
        pulse(pin)
        assert other.pulses == 1
    with water:
        pulse(pin)
        assert water.read()[0].state["pulses"] == 2


def test_read_before_open(bus):
    with pytest.raises(DriverError, match="pulse meter kitchen-water on GPIO17 is not open"):
        meter(bus).read()


def test_pin_taken_by_another_sensor(bus):
    with meter(bus, sensor_id="a"), pytest.raises(TransportError) as err:
        meter(bus, sensor_id="b").open()
    assert str(err.value).startswith("GPIO17 cannot be used for sensor b: ")


def test_fixed_pull_up_pin_refuses_pull_down(bus):
    values, _ = validate_options(PulseMeter.options, {"pin": 2, "litres_per_pulse": 1, "pull": "down"})
    with pytest.raises(TransportError, match="GPIO2 cannot be used for sensor s: "):
        PulseMeter("s", values, bus).open()


def test_gpio_bus_not_open():
    closed_bus = GpioBus("pins", {"pin_factory": "mock"})
    with pytest.raises(TransportError, match="GPIO bus pins is not open"):
        meter(closed_bus).open()


# --- with the simulator ---------------------------------------------------------------------------

def test_simulated_meter_count_matches(bus):
    with meter(bus, litres_per_pulse=1.0) as water:  # default 20 ms debounce
        # 10 pulses a second, each closed 30 ms and open at least 30 ms, with contact chatter.
        with PulseMeterSim(bus.factory, PIN, 1.0, flow_l_per_min=600.0, pulse_seconds=0.03, chatter=2) as sim:
            assert sim.wait_for_pulses(12, timeout=10.0)
        assert water.pulses == sim.pulses
        assert water.read()[0].value == sim.litres / 1000


def test_simulator_follows_a_flow_profile(bus):
    with meter(bus, litres_per_pulse=1.0) as water:
        # 1 L/pulse with the morning 60× faster: the cistern refill (9 L/min) gives 9 pulses a second.
        with PulseMeterSim(bus.factory, PIN, 1.0, flow_l_per_min=morning_use(speed=60.0),
                           pulse_seconds=0.02) as sim:
            assert sim.wait_for_pulses(5, timeout=10.0)
        assert water.pulses == sim.pulses >= 5


def test_simulator_with_no_flow_emits_nothing(bus):
    with meter(bus) as water:
        with PulseMeterSim(bus.factory, PIN, 10.0, flow_l_per_min=0.0) as sim:
            assert not sim.wait_for_pulses(1, timeout=0.2)
        assert water.pulses == sim.pulses == 0


@pytest.mark.parametrize("module", [drivers.pulse_meter, edge.simulate.pulse])
def test_documentation_examples_hold(module):
    results = doctest.testmod(module)
    assert results.attempted > 0
    assert results.failed == 0


# --- kill -9 in the middle of a burst ---------------------------------------------------------------

KILL_LITRES_PER_PULSE = 1.0
KILL_INTERVAL, KILL_COMMIT = 0.2, 0.1
#: How long a whole pulse (closed, then open) takes in the burst below: 20 pulses a second.
KILL_PULSE_SECONDS = 0.05


def kill_config(tmp_path) -> Path:
    """A gateway with only the pulse meter; its broker is a port nobody listens on (the outbox keeps everything)."""
    path = tmp_path / "edge.toml"
    path.write_text(f"""
[gateway]
id = "gw-kill"
grid = "shimen2/xinfukangli/b07"

[mqtt]
host = "127.0.0.1"
port = {free_port()}

[buffer]
path = "{tmp_path / 'outbox.db'}"
commit_interval = "{KILL_COMMIT * 1000:g}ms"

[control]
socket = "{tmp_path / 'control.sock'}"

[[bus]]
name = "gpio"
kind = "gpio"
pin_factory = "mock"

[[sensor]]
id = "flat-302-water"
driver = "pulse_meter"
bus = "gpio"
pin = {PIN}
litres_per_pulse = {KILL_LITRES_PER_PULSE}
interval = "{KILL_INTERVAL * 1000:g}ms"
""")
    return path


def boottime() -> float:
    """Seconds on the clock the agent stamps ``mono`` with (CLOCK_BOOTTIME), shared by every process."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def burst_child(config_path: str) -> None:
    """Run in a process of its own by the kill -9 test: the real agent, and a meter pulsing on its mock pin.

    Prints ``restored N`` (the count the agent continued from), then ``closing N T`` just before the
    N-th closing of the reed switch at CLOCK_BOOTTIME ``T``, so whoever kills it knows an upper bound
    of the truth.
    """
    agent = Agent(load_config(config_path))
    agent.start()
    worker = agent.workers["gpio"]
    slot = worker.slots[0]
    wait_until(lambda: slot.opened, 30, "the pulse meter opened")
    print(f"restored {slot.driver.pulses}", flush=True)
    pin = worker.bus.factory.pin(PIN)
    paced = threading.Event()  # never set: waits without a bare sleep
    n = 0
    while True:
        n += 1
        print(f"closing {n} {boottime():.6f}", flush=True)
        pin.drive_low()
        paced.wait(KILL_PULSE_SECONDS / 2)
        pin.drive_high()
        paced.wait(KILL_PULSE_SECONDS / 2)


def run_and_kill(config: Path, pulses_before_kill: int) -> tuple[int, list[float], float]:
    """Start :func:`burst_child`, SIGKILL it mid-burst; ``(restored, announced closing times, kill time)``."""
    code = f"import sys; from tests.test_pulse_meter import burst_child; burst_child({str(config)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    announced: list[float] = []
    try:
        restored_line = proc.stdout.readline()
        assert restored_line.startswith("restored "), restored_line + proc.stderr.read()
        while len(announced) < pulses_before_kill:
            line = proc.stdout.readline()
            assert line.startswith("closing "), line + proc.stderr.read()
            announced.append(float(line.split()[2]))
    finally:
        proc.kill()
        killed_at = boottime()
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    announced += [float(line.split()[2]) for line in rest.splitlines() if line.startswith("closing ")]
    return int(restored_line.split()[1]), announced, killed_at


def committed(config: Path) -> tuple[int, dict]:
    """The pulse count the outbox holds for the meter, and its newest committed volume reading."""
    with Outbox(config.parent / "outbox.db") as outbox:
        state = outbox.get_state("driver/flat-302-water")
        rows = outbox.fetch({}, 1_000_000)
    volumes = [row.body for row in rows if row.body.get("quantity") == "volume"]
    return state["pulses"], max(volumes, key=lambda body: body["mono"])


def test_kill_9_mid_burst_loses_at_most_the_pulses_after_the_last_committed_reading(tmp_path):
    config = kill_config(tmp_path)
    total_truth_max = 0  # closings announced over both runs: the truth is at most this
    persisted = 0
    for round_ in range(2):
        restored, announced, killed_at = run_and_kill(config, pulses_before_kill=40)
        assert restored == persisted, "the agent continues from the count committed before the kill"
        total_truth_max += len(announced)
        persisted, reading = committed(config)
        reading_at = reading["mono"] / 1000
        # Never above the truth, and the published total is the persisted count.
        assert restored <= persisted <= total_truth_max
        assert reading["value"] == pytest.approx(persisted * KILL_LITRES_PER_PULSE / 1000)
        # Every pulse well before the last committed reading is in it: what is lost came after it …
        before = sum(1 for t in announced if t < reading_at - 0.5)
        assert persisted - restored >= before
        # … and that reading is recent: reads every 0.2 s, commits every 0.1 s (slack for a loaded machine).
        assert killed_at - reading_at < KILL_INTERVAL + KILL_COMMIT + 5.0, f"round {round_}"


def test_a_clean_stop_reads_the_meter_once_more_so_no_pulse_is_lost(bus):
    from edge.sampler import BusWorker, SensorSlot

    emitted: list[dict] = []
    driver = meter(bus, litres_per_pulse=1.0, debounce="0ms")
    # A long interval: the only reads are the first one and the one the stop makes.
    worker = BusWorker(bus, [SensorSlot("kitchen-water", driver, interval=3600.0)],
                       lambda record, state: emitted.append(record), stamp=lambda: {})
    worker.start()
    wait_until(lambda: emitted, 5.0, "the first reading")
    pin = bus.factory.pin(17)
    for _ in range(7):
        pulse(pin)
    worker.stop()
    assert [r["value"] for r in emitted] == [0.0, 0.007]
