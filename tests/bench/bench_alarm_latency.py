"""Alarm latency: from a reading's ``ts`` to a subscriber on the same machine, idle and behind a backlog.

Runs ``linli run`` as a real process against a pymodbus-served transmitter on a
pseudo-terminal whose pressure swings across a threshold rule's limits every
few readings, and a local mosquitto. Every raise and clear is an alarm message;
the subscriber stamps its arrival (wall clock, same machine) and the benchmark
prints p50/p90/p99 of arrival minus the alarm's ``ts`` (the reading's time):

1. idle: nothing else to send;
2. draining: the outbox holds ``--backlog`` readings (written before the agent
   starts, as after a long outage) and alarms must overtake them.

It also prints the agent's CPU while idle (20 sensors every 10 s, no alarms) —
the uplink is woken by the core, it does not poll.

    python tests/bench/bench_alarm_latency.py [--alarms 200] [--backlog 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from buffer.outbox import Outbox, Priority
from edge.simulate.broker import LocalBroker
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, GATEWAY, config_text, low_pressure_rule, linli
from tests.bench.bench_sd_writes import cpu_seconds, gateway_config
from tests.mqtt_helpers import Subscriber

RULE = low_pressure_rule(clear_above="0.12", severity='"critical"')


def swinging(period: float):
    """0.35 MPa and 0.05 MPa in turn, ``period`` seconds each: one alarm transition per swing."""
    return lambda t: 0.05 if int(t / period) % 2 else 0.35


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return (f"n={len(values)}  p50 {statistics.median(values):.1f} ms  p90 {pick(0.9):.1f} ms  "
            f"p99 {pick(0.99):.1f} ms  max {values[-1]:.1f} ms")


def latencies(sub: Subscriber, since_count: int) -> list[float]:
    found = []
    for m in sub.messages("alarm")[since_count:]:
        found.append(m.received_ms - m.payload["ts"])
    return found


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
    with PressureTransmitterSim(unit_id=1, profile=swinging(0.5), baudrate=115200) as sim:
        config = workdir / "edge.toml"
        config.write_text(config_text(port=broker.port, outbox=workdir / "outbox.db", serial_port=sim.port,
                                      interval="100ms").replace('timeout = "300ms"',
                                                               'timeout = "300ms"\nbaudrate = 115200') + RULE)
        if backlog:
            prefill(workdir / "outbox.db", backlog)
        sub = Subscriber(broker.host, broker.port, BASE + "/#")
        proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sub.wait_for(lambda _m: len(sub.messages("alarm")) >= alarms, 300, f"{alarms} alarm messages")
            drained = sum(len(m.payload["records"]) for m in sub.messages("telemetry"))
        finally:
            proc.terminate()
            proc.wait(60)
            sub.close()
    if backlog:
        print(f"  (backlog: {drained} of {backlog} records had arrived when the {alarms}th alarm did)")
    return latencies(sub, 0)


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
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(f"gateway {GATEWAY}: alarm latency, reading ts -> subscriber on the same machine")
    with LocalBroker() as broker:
        with tempfile.TemporaryDirectory() as tmp:
            print("idle:     " + percentiles(run_phase(Path(tmp), broker, args.alarms, 0)))
        with tempfile.TemporaryDirectory() as tmp:
            print("draining: " + percentiles(run_phase(Path(tmp), broker, args.alarms, args.backlog)))
        with tempfile.TemporaryDirectory() as tmp:
            print(f"idle CPU, 20 sensors every 10 s: {idle_cpu(Path(tmp), broker, args.idle_seconds):.2f} % of a core")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
