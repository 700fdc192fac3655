"""The whole agent under a field-like ordeal, with figures: memory, CPU, seqs through outages and kill -9.

Runs ``linli run`` as a real process against a pymodbus-served pressure
transmitter (on a pseudo-terminal) and a local mosquitto reached through a TCP
proxy; a subscriber counts every seq. The ordeal: stream, cut the uplink,
restore it, SIGKILL the agent mid-stream, start it again, stop it with SIGTERM.
Prints resident memory and CPU of the agent process and what the subscriber
saw: seqs, duplicates, gaps (must be none).

    python tests/bench/bench_agent.py [--sensors 8] [--interval 100ms] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.simulate.broker import LocalBroker
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, config_text, linli
from tests.mqtt_helpers import Subscriber
from tests.tcp_proxy import TcpProxy


def proc_facts(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM in kB and CPU seconds of a live process, from /proc."""
    facts = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            facts[key] = float(value.split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    facts["cpu_s"] = (int(fields[11]) + int(fields[12])) / ticks
    return facts


def extra_sensors(count: int, interval: str) -> str:
    return "".join(f"""
[[sensor]]
id = "pump-pressure-{i}"
driver = "modbus_pressure"
bus = "rs485-1"
address = 1
interval = "{interval}"
""" for i in range(2, count + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--interval", default="100ms")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each streaming phase")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, LocalBroker() as broker, \
            PressureTransmitterSim(unit_id=1, profile=0.35, baudrate=115200) as sim, \
            TcpProxy(broker.host, broker.port) as proxy:
        workdir = Path(tmp)
        config = workdir / "edge.toml"
        config.write_text(config_text(port=proxy.port, outbox=workdir / "outbox.db", serial_port=sim.port,
                                      interval=args.interval,
                                      extra_sensors=extra_sensors(args.sensors, args.interval))
                          .replace('timeout = "300ms"', 'timeout = "300ms"\nbaudrate = 115200'))
        sub = Subscriber(broker.host, broker.port, BASE + "/#")
        samples: list[dict[str, float]] = []

        def stream(proc, seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(1.0)
                samples.append(proc_facts(proc.pid))

        print(f"agent: {args.sensors} sensors every {args.interval} on one RS-485 bus (115200 Bd pty)")
        proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        stream(proc, args.seconds)
        print(f"phase 1: streaming {args.seconds:g} s; cutting the uplink")
        proxy.cut()
        stream(proc, args.seconds)
        print(f"phase 2: uplink cut {args.seconds:g} s; restoring it")
        proxy.restore()
        stream(proc, args.seconds / 2)
        print("phase 3: SIGKILL mid-stream, then restart")
        cpu_before_kill = samples[-1]["cpu_s"]
        lifetime = time.monotonic() - started
        proc.kill()
        proc.wait()
        proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stream(proc, args.seconds / 2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        time.sleep(1.0)  # let the last messages reach the subscriber
        seqs = sub.seqs()
        sub.close()

    highest = max(seqs)
    missing = sorted(set(range(1, highest + 1)) - set(seqs))
    rss = [s["VmRSS"] for s in samples]
    print()
    print(f"resident memory: median {statistics.median(rss) / 1024:.1f} MiB, "
          f"max {max(rss) / 1024:.1f} MiB, peak (VmHWM) {max(s['VmHWM'] for s in samples) / 1024:.1f} MiB")
    print(f"CPU of the first agent process: {cpu_before_kill:.2f} s over {lifetime:.0f} s "
          f"({100 * cpu_before_kill / lifetime:.1f} % of one core)")
    print(f"seqs: highest {highest}, received {len(seqs)} (duplicates {len(seqs) - len(set(seqs))}), "
          f"missing {len(missing)}{' e.g. ' + str(missing[:10]) if missing else ''}")
    print(f"exit status after SIGTERM: {proc.returncode}")


if __name__ == "__main__":
    main()
