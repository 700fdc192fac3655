"""``linli demo``: simulated devices -> the real agent -> a real local MQTT broker -> your screen.

What runs: a Modbus RTU pressure transmitter (pymodbus's server on one end of a
pseudo-terminal, the agent's serial bus on the other) whose pressure dips
below the sprinkler floor for a while, and a reed-switch water meter whose
pulses drive a gpiozero mock pin. The agent is the same code as ``linli run``;
the stream printed is what a central subscriber receives.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.agent import Agent
from edge.config import validate
from edge.errors import LinliError
from edge.i18n import _
from edge.simulate.broker import LocalBroker
from edge.simulate.modbus_pressure import PressureTransmitterSim, fire_main_profile
from edge.simulate.pulse import PulseMeterSim, morning_use

EX_UNAVAILABLE = 69

PRESSURE_SENSOR = "pump-pressure"
WATER_SENSOR = "flat-302-water"
WATER_PIN = 17


class BrokerUnavailable(LinliError):
    exit_code = EX_UNAVAILABLE


def demo_config(gateway_id: str, host: str, port: int, workdir: Path, serial_port: str) -> dict[str, Any]:
    """The demo's configuration, as a TOML table would give it (validated like any other)."""
    return {
        "gateway": {"id": gateway_id, "grid": "demo/xinfukangli/b07", "site": "simulated pump room and flat 302",
                    "timezone": "Asia/Shanghai"},
        "mqtt": {"host": host, "port": port, "topic_prefix": "linli", "health_interval": "10s", "keepalive": "30s"},
        "buffer": {"path": str(workdir / "outbox.db"), "max_mb": 16, "commit_interval": "500ms"},
        "control": {"socket": str(workdir / "control.sock")},
        "bus": [
            {"name": "rs485-1", "kind": "serial", "port": serial_port, "baudrate": 9600, "timeout": "500ms"},
            {"name": "gpio", "kind": "gpio", "pin_factory": "mock"},
        ],
        "sensor": [
            {"id": PRESSURE_SENSOR, "driver": "modbus_pressure", "bus": "rs485-1", "address": 1, "interval": "2s"},
            {"id": WATER_SENSOR, "driver": "pulse_meter", "bus": "gpio", "pin": WATER_PIN,
             "litres_per_pulse": 1.0, "interval": "5s"},
        ],
        "rule": [
            # The sprinkler main below its static-pressure floor for 4 s; cleared above 0.12 MPa (hysteresis).
            {"id": "low", "sensor": PRESSURE_SENSOR, "quantity": "pressure", "kind": "threshold",
             "below": 0.10, "clear_above": 0.12, "for": "4s", "severity": "critical",
             "message": "fire-water pressure below the floor"},
            # The meter has gone quiet: no good reading for 30 s.
            {"id": "silent", "sensor": WATER_SENSOR, "quantity": "volume", "kind": "stale", "after": "30s"},
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


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _paint(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if sys.stdout.isatty() else text


def _parse_broker(text: str) -> tuple[str, int]:
    host, _sep, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise BrokerUnavailable(_('--broker expects HOST:PORT, got "{text}"').format(text=text))
    return host, int(port)


def run_demo(*, broker: str | None = None, seconds: float | None = None, gateway_id: str = "gw-demo",
             as_json: bool = False, out=sys.stdout) -> int:
    """Run the demo until ``seconds`` pass or Ctrl-C; everything it started is stopped again."""
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if as_json else \
          (lambda text: print(text, file=out, flush=True))
    with contextlib.ExitStack() as stack:
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
        config = validate(demo_config(gateway_id, host, port, workdir, transmitter.port), source="linli demo")
        say(_("gateway {gateway}: pressure transmitter on {port} (Modbus RTU), water meter on GPIO{pin} (mock)").format(
            gateway=gateway_id, port=transmitter.port, pin=WATER_PIN))
        say(_("subscribed to {topic}/# — Ctrl-C stops").format(topic=config.base_topic))
        viewer = stack.enter_context(StreamViewer(host, port, config.base_topic, as_json, out))
        agent = Agent(config)
        agent.start()
        stack.callback(agent.stop)
        water_bus = agent.workers["gpio"]
        if not water_bus.bus_open.wait(10):
            raise LinliError(_("the simulated GPIO bus did not open: {error}").format(error=water_bus.bus_error))
        stack.enter_context(PulseMeterSim(water_bus.bus.factory, WATER_PIN, litres_per_pulse=1.0,
                                          flow_l_per_min=morning_use(speed=30.0)))
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
        except KeyboardInterrupt:
            say(_("stopping…"))
    say(_("demo stopped: {count} messages received").format(count=viewer.count))
    return 0
