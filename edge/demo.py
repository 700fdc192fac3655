"""``linli demo``: simulated devices -> the real agent -> a real local MQTT broker -> your screen.

What runs, all behind pseudo-terminals and gpiozero's mock pins, read by the
same agent as ``linli run``:

- the pump room: a Modbus RTU pressure transmitter (pymodbus's server) whose
  pressure dips below the sprinkler floor half a minute in, and a Modbus flow
  meter on the main (float32 flow, uint32 totaliser); a 4-20 mA transmitter on
  the sprinkler riser read through an ADS1115 on a simulated I2C bus, which feels
  the same dip and whose wire breaks 60 s in for 20 s;
- an M-Bus line at 2400 Bd with two flats' water meters, one by primary and
  one by secondary address; the second goes silent 45 s in (its neighbour keeps
  being read) and answers again 30 s later;
- an RS-485 line with two CJ/T 188 water meters, a 2004 and a 2018 edition;
- a reed-switch water meter on a GPIO pin;
- the pump room's jockey-pump running contact and a buzzer that sounds while
  the pressure alarm is raised (GPIO);
- a bedroom: a bed pad (a trip to the toilet 70 s in) and a 60 GHz
  vital-sign radar streaming heart and breathing rates, with some corrupted frames.

The meters' volumes grow with a senior's day of water use, played fast. On a
terminal the demo shows the gateway as ``linli watch`` does (every sensor's value and
last minutes, raised alarms on top); with ``--lines``, ``--json`` or off a terminal it
prints the stream a central subscriber receives.
"""

from __future__ import annotations

import contextlib
import math
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt

from drivers.transports import i2c
from edge.agent import Agent
from edge.config import validate
from edge.errors import LinliError
from edge.exits import EX_OK, EX_UNAVAILABLE
from edge.i18n import _
from edge.terminal import colour_wanted
from edge.simulate.broker import LocalBroker
from edge.simulate.cjt188_meter import UNIT_L, UNIT_M3, Cjt188WaterMeter
from edge.simulate.contacts import ContactSim, pump_starts
from edge.simulate.i2c_chips import Ads1115, FakeSMBus, LoopTransmitter
from edge.simulate.line import SimulatedLine
from edge.simulate.mbus_meter import MbusWaterMeter
from edge.simulate.modbus_device import FlowMeterSim
from edge.simulate.modbus_pressure import PressureTransmitterSim, fire_main_profile
from edge.simulate.pulse import PulseMeterSim, morning_use
from edge.simulate.radar import Mr60bha2Simulator
from edge.simulate.water_use import household_use


PRESSURE_SENSOR = "pump-pressure"
FLOW_SENSOR = "pump-flow"
WATER_SENSOR = "flat-302-water"
WATER_PIN = 17
PUMP_SENSOR, PUMP_PIN = "jockey-pump", 22
BED_SENSOR, BED_PIN = "bed-201", 23
RADAR_SENSOR = "bed-201-radar"
BUZZER_PIN = 18
LOOP_SENSOR = "riser-pressure"
#: When the riser transmitter's loop wire breaks, and for how long (seconds since start).
BREAK_AT, BREAK_FOR = 60.0, 20.0
#: The bed pad as (seconds since start, closed): lying down, turning over at 20 s (open 2 s, under the
#: pad's 3 s hold), up to the toilet at 70 s for 15 s, back in bed; then the same again every 2 minutes.
BED_STEPS = ((0.0, True), (20.0, False), (22.0, True), (70.0, False), (85.0, True))
BED_EVERY = 120.0
#: (sensor id, primary address, secondary id) of the M-Bus meters; the second is read by secondary address.
MBUS_METERS = (("flat-101-water", 1, "24100101"), ("flat-102-water", 2, "24100102"))
#: (sensor id, address, DI order of the meter, di_order in config) of the CJ/T 188 meters.
CJT188_METERS = (("flat-201-water", "00000000020101", "2004", "2004"),
                 ("flat-202-water", "00000000020202", "2018", "auto"))
#: When the second M-Bus meter stops answering, and for how long (seconds since start).
SILENT_AT, SILENT_FOR = 45.0, 30.0
#: A senior's day played 240 times faster from 06:30: six minutes of demo are a day of use.
USE_SPEED = 240.0


class BrokerUnavailable(LinliError):
    exit_code = EX_UNAVAILABLE


def demo_config(gateway_id: str, host: str, port: int, workdir: Path, ports: dict[str, str]) -> dict[str, Any]:
    """The demo's configuration, as a TOML table would give it (validated like any other).

    ``ports`` maps the serial buses (``pump``, ``flow``, ``mbus``, ``rs485``, ``radar``) to their simulated
    ports, and ``i2c`` to the name of the simulated I2C bus.
    """
    mbus = [{"id": sensor, "driver": "mbus_meter", "bus": "mbus-1", "interval": "5s",
             "address": secondary if index else primary, "records": ["volume", "volume_flow"]}
            for index, (sensor, primary, secondary) in enumerate(MBUS_METERS)]
    cjt188 = [{"id": sensor, "driver": "cjt188_meter", "bus": "rs485-2", "interval": "5s", "address": address,
               "di_order": di_order} for sensor, address, _order, di_order in CJT188_METERS]
    return {
        "gateway": {"id": gateway_id, "grid": "demo/xinfukangli/b07", "site": "simulated pump room and flats",
                    "timezone": "Asia/Shanghai"},
        "mqtt": {"host": host, "port": port, "topic_prefix": "linli", "health_interval": "10s", "keepalive": "30s"},
        "buffer": {"path": str(workdir / "outbox.db"), "max_mb": 16, "commit_interval": "500ms"},
        "control": {"socket": str(workdir / "control.sock")},
        "bus": [
            {"name": "rs485-1", "kind": "serial", "port": ports["pump"], "baudrate": 9600, "timeout": "500ms"},
            {"name": "rs485-3", "kind": "serial", "port": ports["flow"], "baudrate": 9600, "timeout": "500ms"},
            {"name": "mbus-1", "kind": "serial", "port": ports["mbus"], "baudrate": 2400, "parity": "E",
             "timeout": "300ms"},
            {"name": "rs485-2", "kind": "serial", "port": ports["rs485"], "baudrate": 2400, "parity": "E",
             "timeout": "500ms"},
            {"name": "radar", "kind": "serial", "port": ports["radar"], "baudrate": 115200},
            {"name": "i2c", "kind": "i2c", "simulator": ports["i2c"]},
            {"name": "gpio", "kind": "gpio", "pin_factory": "mock"},
        ],
        "sensor": [
            {"id": PRESSURE_SENSOR, "driver": "modbus_pressure", "bus": "rs485-1", "address": 1, "interval": "2s"},
            {"id": LOOP_SENSOR, "driver": "ads1115_loop", "bus": "i2c", "interval": "2s", "address": 0x48,
             "channel": 0, "pga": 4.096, "data_rate": 128, "shunt_ohms": 150.0, "span": [0.0, 1.6], "unit": "MPa"},
            {"id": FLOW_SENSOR, "driver": "modbus", "bus": "rs485-3", "address": 3, "interval": "5s",
             "registers": [
                 {"quantity": "volume_flow", "unit": "m3/h", "register": FlowMeterSim.REG_FLOW, "type": "float32",
                  "word_order": "little"},
                 {"quantity": "volume", "unit": "m3", "register": FlowMeterSim.REG_TOTAL, "type": "uint32",
                  "scale": 0.001},
             ]},
            *mbus,
            *cjt188,
            {"id": WATER_SENSOR, "driver": "pulse_meter", "bus": "gpio", "pin": WATER_PIN,
             "litres_per_pulse": 1.0, "interval": "5s"},
            {"id": PUMP_SENSOR, "driver": "contact", "bus": "gpio", "pin": PUMP_PIN, "quantity": "pump_running",
             "interval": "1s", "report_every": "30s"},
            {"id": BED_SENSOR, "driver": "bed_pad", "bus": "gpio", "pin": BED_PIN, "hold": "3s", "interval": "1s",
             "report_every": "30s"},
            {"id": RADAR_SENSOR, "driver": "mr60bha2", "bus": "radar", "interval": "2s",
             "publish": ["presence", "heart_rate", "breathing_rate"]},
        ],
        "output": [
            {"id": "pump-room-buzzer", "kind": "buzzer", "bus": "gpio", "pin": BUZZER_PIN, "on": ["pump-pressure/*"]},
        ],
        "rule": [
            # The sprinkler main below its static-pressure floor for 4 s; cleared above 0.12 MPa (hysteresis).
            {"id": "low", "sensor": PRESSURE_SENSOR, "quantity": "pressure", "kind": "threshold",
             "below": 0.10, "clear_above": 0.12, "for": "4s", "severity": "critical",
             "message": "fire-water pressure below the floor"},
            # The riser transmitter's loop below 3.6 mA: a broken wire or a dead transmitter.
            {"id": "loop-fault", "sensor": LOOP_SENSOR, "quantity": "loop_current", "kind": "threshold",
             "below": 3.6, "for": "4s", "severity": "critical", "message": "pressure loop broken"},
            # Out of bed for more than 5 s (the pad's own hold already ignores turning over).
            {"id": "out-of-bed", "sensor": BED_SENSOR, "quantity": "presence", "kind": "state", "equals": False,
             "for": "5s", "severity": "warning", "message": "out of bed"},
            # A meter has gone quiet: no good reading for 15 s.
            *({"id": "silent", "sensor": sensor, "quantity": "volume", "kind": "stale", "after": "15s"}
              for sensor in (WATER_SENSOR, *(m[0] for m in MBUS_METERS), *(m[0] for m in CJT188_METERS))),
        ],
    }


class StreamViewer:
    """A central subscriber: prints every message under the gateway's base topic as it arrives."""

    def __init__(self, host: str, port: int, base_topic: str, as_json: bool, out=sys.stdout):
        self.base = base_topic
        self.as_json = as_json
        self.out = out
        self.messages: queue.Queue = queue.Queue()
        self.count = 0
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"linli-demo-viewer-{int(time.time())}")
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe(base_topic + "/#", qos=1)
        self._client.on_message = lambda c, u, msg: self.messages.put((msg.topic, msg.payload, msg.retain))
        self._host, self._port = host, port
        self._printer = threading.Thread(target=self._print_loop, name="linli-demo-viewer", daemon=True)
        self._stopping = threading.Event()

    def __enter__(self):
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise BrokerUnavailable(_("cannot reach the MQTT broker at {host}:{port}: {error}").format(
                host=self._host, port=self._port, error=exc)) from None
        self._client.loop_start()
        self._printer.start()
        return self

    def __exit__(self, *exc):
        self._stopping.set()
        self._printer.join(5)
        self._client.disconnect()
        self._client.loop_stop()

    def _print_loop(self) -> None:
        while not (self._stopping.is_set() and self.messages.empty()):
            try:
                topic, payload, retained = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            self.count += 1
            for line in self.render(topic, payload, retained):
                print(line, file=self.out, flush=True)

    def render(self, topic: str, payload: bytes, retained: bool) -> list[str]:
        suffix = topic[len(self.base) + 1:] if topic.startswith(self.base + "/") else topic
        if self.as_json:
            try:
                body = json.loads(payload)
            except ValueError:
                body = payload.decode("utf-8", "replace")
            return [json.dumps({"topic": topic, "retained": retained, "payload": body}, ensure_ascii=False)]
        try:
            body = json.loads(payload)
        except ValueError:
            return [f"{_clock()}  {suffix:<10} {payload[:80]!r}"]
        if suffix == "telemetry":
            return [self._reading_line(r) for r in body.get("records", [])]
        if suffix == "alarm":
            text = (f"{_clock()}  {'ALARM':<10} {body.get('alarm')} {body.get('state')} ({body.get('severity')}) "
                    f"value {body.get('value')} limit {body.get('limit')}  seq {body.get('seq')}")
            return [_paint(text, "31;1")]
        if suffix == "status":
            note = _(" (retained)") if retained else ""
            return [_paint(f"{_clock()}  {'status':<10} {body.get('state')}{note}  version {body.get('version')}",
                           "36")]
        if suffix == "health":
            outbox = body.get("outbox", {})
            return [_paint(f"{_clock()}  {'health':<10} outbox {outbox.get('depth')} records, "
                           f"rss {body.get('rss_kb')} kB, clock synced {body.get('clock_synced')}", "2")]
        return [f"{_clock()}  {suffix:<10} {json.dumps(body, ensure_ascii=False)[:100]}"]

    @staticmethod
    def _reading_line(record: dict[str, Any]) -> str:
        if record.get("kind") == "dropped":
            return _paint(f"{_clock()}  {'DROPPED':<10} {record.get('count')} records, seq {record.get('seq_from')}"
                          f"-{record.get('seq_to')}", "33")
        value = record.get("value")
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        text = (f"{_clock()}  {'reading':<10} {record.get('sensor'):<16} {record.get('quantity'):<10} "
                f"{shown:>9} {record.get('unit') or '':<4} {record.get('quality'):<4}  seq {record.get('seq')}")
        return _paint(text, "33") if record.get("quality") != "good" else text


def _riser_pressure(t: float) -> float:
    """MPa on the sprinkler riser: 0.62 with a ripple, down to 0.35 while the main dips (30–52 s)."""
    dip = 0.27 if 30.0 <= t < 52.0 else 0.0
    return round(0.62 - dip + 0.01 * math.sin(t / 7), 4)


def _wait_opened(worker, sensors: tuple[str, ...], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(slot.opened for slot in worker.slots if slot.sensor_id in sensors):
        if time.monotonic() > deadline:
            raise LinliError(_("the simulated GPIO sensors did not open: {error}").format(error=worker.bus_error))
        time.sleep(0.05)  # the bus thread opens them on its first pass; nothing signals it


class _Script:
    """Things to do at given seconds since start, done from the demo's main loop."""

    def __init__(self, steps):
        self._t0 = time.monotonic()
        self._steps = sorted(steps, key=lambda step: step[0])

    def run_due(self) -> None:
        while self._steps and time.monotonic() - self._t0 >= self._steps[0][0]:
            _at, action = self._steps.pop(0)
            action()


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _paint(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if colour_wanted(sys.stdout) else text


def _parse_broker(text: str) -> tuple[str, int]:
    host, _sep, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise BrokerUnavailable(_('--broker expects HOST:PORT, got "{text}"').format(text=text))
    return host, int(port)


@contextlib.contextmanager
def _ctrl_c_stops() -> Iterator[threading.Event]:
    """Ctrl-C sets the event instead of raising wherever the demo happens to be, so it always stops in order."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: pressed.set())
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def run_demo(*, broker: str | None = None, seconds: float | None = None, gateway_id: str = "gw-demo",
             as_json: bool = False, lines: bool = False, colour: bool = False, out=sys.stdout) -> int:
    """Run the demo until ``seconds`` pass or Ctrl-C (or q on the screen); everything it started is stopped again.

    On a terminal, unless ``lines`` or ``as_json``, the agent is shown as ``linli watch`` shows it;
    otherwise each MQTT message is printed. ``colour``: the screen may use colour (the ``NO_COLOR`` rule,
    which the command line knows).
    """
    on_screen = not (as_json or lines) and out.isatty()
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if as_json else \
          (lambda text: print(text, file=out, flush=True))
    with contextlib.ExitStack() as stack:
        interrupted = stack.enter_context(_ctrl_c_stops())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="linli-demo-")))
        if broker:
            host, port = _parse_broker(broker)
            say(_("broker: using {host}:{port}").format(host=host, port=port))
        else:
            local = stack.enter_context(LocalBroker())
            host, port = local.host, local.port
            say(_("broker: started {kind} on {host}:{port}").format(kind=local.kind, host=host, port=port))
        # The sprinkler main dips to 0.08 MPa, below a typical 0.10 MPa floor, half a minute in.
        transmitter = stack.enter_context(PressureTransmitterSim(unit_id=1, profile=fire_main_profile(dip_at=30.0)))
        flow_meter = stack.enter_context(FlowMeterSim(unit=3))
        mbus_meters = [MbusWaterMeter(primary, secondary, flow=household_use(USE_SPEED, seed=index, start_hour=6.5),
                                      start_m3=123.456 + index)
                       for index, (_sensor, primary, secondary) in enumerate(MBUS_METERS)]
        mbus_line = stack.enter_context(SimulatedLine(mbus_meters, baudrate=2400, name="ttyMBUS"))
        cjt188_line = stack.enter_context(SimulatedLine(
            [Cjt188WaterMeter(address, di_order=order, flow=household_use(USE_SPEED, seed=10 + index, start_hour=6.5),
                              start_m3=56.78 + index, unit=UNIT_L if index else UNIT_M3)
             for index, (_sensor, address, order, _config) in enumerate(CJT188_METERS)],
            baudrate=2400, name="ttyRS485"))
        radar = stack.enter_context(Mr60bha2Simulator(period=0.25, corruption=0.02, seed=1))
        riser = LoopTransmitter(shunt_ohms=150.0, span=(0.0, 1.6))
        # The riser feels the same dip as the main half a minute in, then its loop wire breaks.
        riser_start = time.monotonic()

        def riser_profile(_t: float) -> float:
            return _riser_pressure(time.monotonic() - riser_start)

        riser.set_pressure(riser_profile)
        i2c_name = f"demo-{id(riser):x}"
        i2c.SIMULATED[i2c_name] = FakeSMBus(Ads1115(0x48, {0: riser}))
        stack.callback(i2c.SIMULATED.pop, i2c_name, None)
        ports = {"pump": transmitter.port, "flow": flow_meter.port, "mbus": mbus_line.path,
                 "rs485": cjt188_line.path, "radar": radar.path, "i2c": i2c_name}
        config = validate(demo_config(gateway_id, host, port, workdir, ports))   # no file: nothing to reload or manage
        say(_("gateway {gateway}: pump room on {pump} and {flow} (Modbus RTU), two M-Bus meters on {mbus}, "
              "two CJ/T 188 meters on {rs485}, a pulse water meter on GPIO{pin} (mock)").format(
            gateway=gateway_id, pin=WATER_PIN, **ports))
        say(_("bedroom: bed pad on GPIO{bed} (mock), vital-sign radar on {radar}; jockey pump contact on GPIO{pump}, "
              "buzzer on GPIO{buzzer}").format(bed=BED_PIN, radar=radar.path, pump=PUMP_PIN, buzzer=BUZZER_PIN))
        say(_("{sensor} goes silent {at:.0f} s in and answers again {back:.0f} s later").format(
            sensor=MBUS_METERS[1][0], at=SILENT_AT, back=SILENT_FOR))
        say(_("subscribed to {topic}/# — Ctrl-C stops").format(topic=config.base_topic))
        # Behind the screen the subscriber still counts what a central subscriber receives.
        stream_out = stack.enter_context(open(os.devnull, "w", encoding="utf-8")) if on_screen else out
        viewer = stack.enter_context(StreamViewer(host, port, config.base_topic, as_json, stream_out))
        agent = Agent(config)
        agent.start()
        stack.callback(agent.stop)
        water_bus = agent.workers["gpio"]
        if not water_bus.bus_open.wait(10):
            raise LinliError(_("the simulated GPIO bus did not open: {error}").format(error=water_bus.bus_error))
        stack.enter_context(PulseMeterSim(water_bus.bus.factory, WATER_PIN, litres_per_pulse=1.0,
                                          flow_l_per_min=morning_use(speed=30.0)))
        # The contact drivers set their pins' pulls when they open; drive the pins only after that.
        _wait_opened(water_bus, (PUMP_SENSOR, BED_SENSOR))
        # The jockey pump tops the main up for 8 s every 40 s; the resident sleeps, turns over, gets up at night.
        stack.enter_context(ContactSim(water_bus.bus.factory, PUMP_PIN, bounce=3, closed_is_high=False)).play(
            pump_starts(every=40.0, run=8.0, count=1, first=5.0), every=40.0)
        stack.enter_context(ContactSim(water_bus.bus.factory, BED_PIN, closed_is_high=False)).play(
            BED_STEPS, every=BED_EVERY)
        script = _Script((
            (SILENT_AT, lambda: mbus_line.set_fault(mbus_meters[1], "silent")),
            (SILENT_AT + SILENT_FOR, lambda: mbus_line.set_fault(mbus_meters[1], None)),
            (BREAK_AT, riser.break_wire),
            (BREAK_AT + BREAK_FOR, lambda: riser.set_pressure(riser_profile)),
            # A sleeper's heart and breathing drift slowly.
            *((t, lambda t=t: radar.set(heart_rate=round(66 + 6 * math.sin(t / 40), 1),
                                        breathing_rate=round(14 + 2 * math.sin(t / 55), 1)))
              for t in range(5, 3600, 5)),
        ))
        deadline = None if seconds is None else time.monotonic() + seconds

        def over() -> bool:
            return interrupted.is_set() or (deadline is not None and time.monotonic() >= deadline)

        if on_screen:
            from edge.watch import asker, screen

            screen(asker(config.control.socket, LinliError), until=over, tick=script.run_due, colour=colour)
            interrupted.set()     # q left the screen: the demo ends with it
        while not over():
            script.run_due()
            interrupted.wait(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
        if interrupted.is_set():
            say(_("stopping…"))
    say(_("demo stopped: {count} messages received").format(count=viewer.count))
    return EX_OK
