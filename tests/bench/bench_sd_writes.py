"""Bytes the agent writes to storage: a gateway of 20 Modbus sensors every 10 s, with the default [buffer].

Runs ``linli run`` as a real process against a pymodbus-served transmitter on a
pseudo-terminal and a local mosquitto reached through a TCP proxy, in three
phases of ``--minutes`` each: link up, link down (the proxy cut), link flapping
(cut and restored every 30 s). For each phase it prints what the kernel counted
as written by the agent process (``/proc/PID/io`` ``write_bytes``: page-cache
pages dirtied, what reaches the SD card), per day and per record, beside the
records' own JSON size, the agent's log volume (its stderr, what journald
stores) and its CPU time. The issue's budget: link up <= 30 MB/day, link down
<= 2.5 x the records' JSON.

    python tests/bench/bench_sd_writes.py [--minutes 4] [--sensors 20] [--interval 10s]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.simulate.broker import LocalBroker
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, config_text, linli
from tests.bench.bench_agent import extra_sensors
from tests.mqtt_helpers import Subscriber
from tests.tcp_proxy import TcpProxy

DAY = 86_400


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_config(workdir: Path, port: int, serial_port: str, sensors: int, interval: str) -> str:
    text = config_text(port=port, outbox=workdir / "outbox.db", serial_port=serial_port, interval=interval,
                       extra_sensors=extra_sensors(sensors, interval))
    # The default [buffer] (only the path stays) and the default reconnect pacing and keepalive.
    for test_setting in ('commit_interval = "100ms"\n', 'reconnect_min = "100ms"\n', 'reconnect_max = "500ms"\n',
                         'keepalive = "5s"\n'):
        text = text.replace(test_setting, "")
    return (text
            .replace('timeout = "300ms"', 'timeout = "300ms"\nbaudrate = 115200'))


class StderrCounter(threading.Thread):
    """Counts the bytes the agent logs (what journald would store)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.bytes = 0

    def run(self) -> None:
        for line in iter(self.stream.readline, b""):
            self.bytes += len(line)


def record_json_bytes(sub: Subscriber) -> tuple[int, int]:
    """(records, bytes of their compact JSON) received so far, distinct by seq."""
    seen: dict[int, int] = {}
    for m in sub.messages("telemetry"):
        for r in m.payload["records"]:
            seen[r["seq"]] = len(json.dumps(r, separators=(",", ":")))
    return len(seen), sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="length of each phase")
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--phases", default="up,down,flapping", help="which phases, in order (comma-separated)")
    args = parser.parse_args()
    phase_s = args.minutes * 60

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/var/tmp")) as tmp, LocalBroker() as broker, \
            PressureTransmitterSim(unit_id=1, profile=0.35, baudrate=115200) as sim, \
            TcpProxy(broker.host, broker.port) as proxy:
        workdir = Path(tmp)
        config = workdir / "edge.toml"
        config.write_text(gateway_config(workdir, proxy.port, sim.port, args.sensors, args.interval))
        sub = Subscriber(broker.host, broker.port, BASE + "/#")
        proc = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        logs = StderrCounter(proc.stderr)
        logs.start()
        print(f"agent: {args.sensors} Modbus sensors every {args.interval}, default [buffer], outbox on "
              f"{workdir} ({os.statvfs(workdir).f_fsid:x})")
        time.sleep(20)   # start-up (schema, first reservation) is not part of the steady state
        results = []
        phases = {"up": ("link up", None), "down": ("link down", "down"), "flapping": ("link flapping", 30.0)}
        for name, flap in (phases[p] for p in args.phases.split(",")):
            w0, c0, l0, t0 = write_bytes(proc.pid), cpu_seconds(proc.pid), logs.bytes, time.monotonic()
            n0, j0 = record_json_bytes(sub)
            made0 = made_so_far(proc, workdir)
            if flap == "down":
                proxy.cut()
                time.sleep(phase_s)
            elif flap:
                end = time.monotonic() + phase_s
                while time.monotonic() < end:
                    proxy.cut()
                    time.sleep(min(flap, max(0.0, end - time.monotonic())))
                    proxy.restore()
                    time.sleep(min(flap, max(0.0, end - time.monotonic())))
            else:
                time.sleep(phase_s)
            elapsed = time.monotonic() - t0
            written = write_bytes(proc.pid) - w0
            cpu = cpu_seconds(proc.pid) - c0
            made = made_so_far(proc, workdir) - made0
            proxy.restore()
            n1, j1 = record_json_bytes(sub)
            per_record_json = (j1 - j0) / max(1, n1 - n0) if n1 > n0 else 200.0
            json_bytes = made * per_record_json
            results.append((name, elapsed, written, made, json_bytes, logs.bytes - l0, cpu))
            if flap == "down":   # let the backlog drain before the next phase
                time.sleep(min(60.0, phase_s / 2))
        proc.terminate()
        proc.wait(60)
        sub.close()

    print()
    print(f"{'phase':<14} {'MB/day':>8} {'B/record':>9} {'JSON MB/day':>12} {'x JSON':>7} "
          f"{'log kB/day':>11} {'CPU % core':>11}")
    for name, elapsed, written, made, json_bytes, log_bytes, cpu in results:
        scale = DAY / elapsed
        print(f"{name:<14} {written * scale / 1e6:8.2f} {written / max(1, made):9.1f} "
              f"{json_bytes * scale / 1e6:12.2f} {written / max(1.0, json_bytes):7.2f} "
              f"{log_bytes * scale / 1e3:11.1f} {100 * cpu / elapsed:11.2f}")


def made_so_far(proc: subprocess.Popen, workdir: Path) -> int:
    """Records the agent has numbered so far, from its own status over the control socket."""
    status = linli("--config", str(workdir / "edge.toml"), "status", "--json", stdout=subprocess.PIPE)
    out, _ = status.communicate(timeout=30)
    return json.loads(out)["outbox"]["next_seq"]


if __name__ == "__main__":
    main()
