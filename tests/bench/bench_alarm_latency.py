"""Alarm latency: from a reading's ``ts`` to a subscriber on the same machine, idle and behind a backlog.

Runs ``linli run`` as a real process against a pymodbus-served transmitter on a
pseudo-terminal whose pressure swings across a threshold rule's limits every
few readings, and a local mosquitto. Every raise and clear is an alarm message;
the subscriber stamps its arrival (wall clock, same machine) and the benchmark
prints p50/p90/p99 of arrival minus the alarm's ``ts`` (the reading's time):

1. idle: nothing else to send;
2. draining: the outbox holds ``--backlog`` readings (written before the agent
   starts, as after a long outage); only the alarms that arrive before the last
   of them count, so every figure is an alarm overtaking the backlog.

The subscriber only stamps arrivals and parses afterwards, so its own work does
not delay what it measures.

It also prints the agent's CPU while idle (20 sensors every 10 s, no alarms) —
the uplink is woken by the core, it does not poll.

    python tests/bench/bench_alarm_latency.py [--alarms 200] [--backlog 300000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import paho.mqtt.client as mqtt

from buffer.outbox import Outbox, Priority
from edge.simulate.broker import LocalBroker
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, GATEWAY, config_text, low_pressure_rule, linli
from tests.bench.bench_sd_writes import cpu_seconds, gateway_config

RULE = low_pressure_rule(clear_above="0.12", severity='"critical"')


def swinging(period: float):
    """0.35 MPa and 0.05 MPa in turn, ``period`` seconds each: one alarm transition per swing."""
    return lambda t: 0.05 if int(t / period) % 2 else 0.35


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return (f"n={len(values)}  p50 {statistics.median(values):.1f} ms  p90 {pick(0.9):.1f} ms  "
            f"p99 {pick(0.99):.1f} ms  max {values[-1]:.1f} ms")


class Recorder:
    """Every message with its arrival (wall clock ms), parsed only afterwards: a subscriber that validates
    while it receives would measure its own slowness (the test suite's Subscriber does; not this one)."""

    def __init__(self, host: str, port: int, topic: str):
        self.got: list[tuple[str, bytes, int]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-alarm-latency")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload, time.time_ns() // 1_000_000))
        self.client.connect(host, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the recorder could not subscribe")
        self._parsed = 0

    def alarms(self) -> list[tuple[dict, int]]:
        return [(json.loads(payload), at) for topic, payload, at in list(self.got) if topic.endswith("/alarm")]

    def has_seq(self, seq: int) -> bool:
        """Whether a telemetry message carrying ``seq`` arrived: a byte search, so that waiting parses nothing."""
        needle = f'"seq":{seq},'.encode()
        got = list(self.got)
        for topic, payload, _at in got[self._parsed:]:
            if topic.endswith("/telemetry") and needle in payload:
                return True
        self._parsed = len(got)
        return False

    def arrival_of(self, seq: int) -> int:
        for topic, payload, at in self.got:
            if topic.endswith("/telemetry") and any(r["seq"] == seq for r in json.loads(payload)["records"]):
                return at
        raise LookupError(seq)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def prefill(path: Path, count: int) -> None:
    """An outbox holding ``count`` readings, as after a long outage (spilled in chunks, as the agent would)."""
    with Outbox(path, commit_max_records=5_000) as box:
        for i in range(count):
            box.add({"kind": "reading", "sensor": "flat-101-water", "quantity": "volume", "value": i / 1000,
                     "unit": "m3", "quality": "good", "ts": time.time_ns() // 1_000_000 - 86_400_000 + i,
                     "synced": True, "boot": "bench", "mono": i}, Priority.TELEMETRY)
            if box.commit_due():
                box.commit()


def run_phase(workdir: Path, broker: LocalBroker, alarms: int, backlog: int) -> list[float]:
    """Latencies of the alarms that arrived while the backlog drained (or of ``alarms`` alarms when none)."""
    with PressureTransmitterSim(unit_id=1, profile=swinging(0.5), baudrate=115200) as sim:
        config = workdir / "edge.toml"
        config.write_text(config_text(port=broker.port, outbox=workdir / "outbox.db", serial_port=sim.port,
                                      interval="100ms").replace('timeout = "300ms"',
                                                               'timeout = "300ms"\nbaudrate = 115200') + RULE)
        if backlog:
            prefill(workdir / "outbox.db", backlog)
        recorder = Recorder(broker.host, broker.port, BASE + "/#")
        proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        try:
            while time.monotonic() - started < 600:
                time.sleep(0.5)
                if backlog and not recorder.has_seq(backlog):   # the last of the backlog (records go in seq order)
                    continue
                if len(recorder.alarms()) >= alarms:
                    break
        finally:
            proc.terminate()
            proc.wait(60)
            recorder.close()
    found = [(at - body["ts"], at) for body, at in recorder.alarms()]
    if not backlog:
        return [latency for latency, _ in found]
    drained_at = recorder.arrival_of(backlog)
    during = [latency for latency, at in found if at <= drained_at]
    first_alarm = min(at for _, at in found)
    print(f"  (backlog of {backlog} drained {(drained_at - first_alarm) / 1000:.1f} s after the first alarm "
          f"arrived; {len(during)} alarms arrived meanwhile)")
    return during


def idle_cpu(workdir: Path, broker: LocalBroker, seconds: float) -> float:
    with PressureTransmitterSim(unit_id=1, profile=0.35, baudrate=115200) as sim:
        config = workdir / "idle.toml"
        config.write_text(gateway_config(workdir, broker.port, sim.port, 20, "10s"))
        proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(10)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            return 100 * (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
        finally:
            proc.terminate()
            proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=300_000, help="readings waiting when the agent starts")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(f"gateway {GATEWAY}: alarm latency, reading ts -> subscriber on the same machine")
    with LocalBroker() as broker:
        with tempfile.TemporaryDirectory() as tmp:
            print("idle:     " + percentiles(run_phase(Path(tmp), broker, args.alarms, 0)))
        with tempfile.TemporaryDirectory() as tmp:
            print(f"draining {args.backlog}: " + percentiles(run_phase(Path(tmp), broker, args.alarms, args.backlog)))
        with tempfile.TemporaryDirectory() as tmp:
            print(f"idle CPU, 20 sensors every 10 s: {idle_cpu(Path(tmp), broker, args.idle_seconds):.2f} % of a core")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
